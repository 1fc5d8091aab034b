"""The labeled PII corpus (`tests/data/pii_corpus.tsv`, 500+ lines in seven locales): recall per
type, precision per type, and lookalikes that must come back unchanged.

`python -m pytest tests/test_pii_corpus.py -rA` prints the table quoted in docs/pii.md.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pytest

from inferline.core.records import Batch
from inferline.processors.pii import PiiMasker

pytestmark = pytest.mark.unit

CORPUS = Path(__file__).parent / "data" / "pii_corpus.tsv"
MIN_RECALL = 0.99
MIN_LOOKALIKE_PRECISION = 0.97
MIN_TYPE_PRECISION = 0.97


class Line(NamedTuple):
    locale: str
    pii_type: str  # or LOOKALIKE
    value: str
    text: str


def _corpus() -> list[Line]:
    lines = []
    for raw in CORPUS.read_text(encoding="utf-8").splitlines():
        if raw and not raw.startswith("#"):
            locale, pii_type, value, text = raw.split("\t")
            lines.append(Line(locale, pii_type, value.replace("\\n", "\n"), text.replace("\\n", "\n")))
    return lines


class Figures(NamedTuple):
    recall: dict[str, float]
    precision: dict[str, float]
    lookalike_precision: float
    misses: list[tuple[str, str]]


def measure(masker: PiiMasker, lines: list[Line]) -> Figures:
    found, total = Counter[str](), Counter[str]()
    true_pos, false_pos = Counter[str](), Counter[str]()
    intact = 0
    lookalikes = 0
    misses: list[tuple[str, str]] = []
    for line in lines:
        masked, _ = masker.mask_text(line.text)
        detections = masker.detect(line.text)
        if line.pii_type == "LOOKALIKE":
            lookalikes += 1
            intact += masked == line.text
            if masked != line.text:
                misses.append((line.text, masked))
        else:
            total[line.pii_type] += 1
            ok = line.value not in masked and f"<{line.pii_type}>" in masked
            found[line.pii_type] += ok
            if not ok:
                misses.append((line.text, masked))
        # A detection is right when it overlaps the labeled value and has its type.
        start = line.text.find(line.value) if line.pii_type != "LOOKALIKE" else -1
        end = start + len(line.value)
        for d in detections:
            if d.pii_type == line.pii_type and start >= 0 and d.start < end and d.end > start:
                true_pos[d.pii_type] += 1
            else:
                false_pos[d.pii_type] += 1
    kinds = sorted(set(total) | set(false_pos))
    return Figures(
        recall={k: found[k] / total[k] for k in kinds if total[k]},
        precision={
            k: true_pos[k] / (true_pos[k] + false_pos[k]) for k in kinds if true_pos[k] + false_pos[k]
        },
        lookalike_precision=intact / lookalikes,
        misses=misses,
    )


@pytest.fixture(scope="module")
def figures() -> Figures:
    lines = _corpus()
    assert len(lines) >= 500
    assert {line.locale for line in lines} >= {"en", "de", "fr", "es", "it", "nl", "pt"}
    result = measure(PiiMasker(), lines)
    counts = Counter(line.pii_type for line in lines)
    print("\ntype           lines  recall  precision")
    for kind in sorted(result.recall):
        print(
            f"{kind:<14} {counts[kind]:>5}  {result.recall[kind]:6.1%}  {result.precision.get(kind, 0):8.1%}"
        )
    print(f"LOOKALIKE      {counts['LOOKALIKE']:>5}  unchanged {result.lookalike_precision:.1%}")
    return result


def test_recall_per_type(figures: Figures) -> None:
    low = {k: v for k, v in figures.recall.items() if v < MIN_RECALL}
    assert not low, f"recall below {MIN_RECALL:.0%}: {low}; misses: {figures.misses[:20]}"
    assert {"PERSON", "ADDRESS", "EMAIL", "PHONE", "IBAN", "CREDIT_CARD"} <= set(figures.recall)


def test_precision_per_type(figures: Figures) -> None:
    low = {k: v for k, v in figures.precision.items() if v < MIN_TYPE_PRECISION}
    assert not low, f"precision below {MIN_TYPE_PRECISION:.0%}: {low}"


def test_lookalikes_survive(figures: Figures) -> None:
    assert figures.lookalike_precision >= MIN_LOOKALIKE_PRECISION, figures.misses[:20]


def test_unseen_sample() -> None:
    """`tests/data/pii_unseen.tsv` was written after the detectors were done and measured once;
    misses there are left as they are (a non-European name with no context), so this is the
    figure to expect on names and addresses the detectors were not developed on."""
    lines = [
        Line(loc, kind, value.replace("\\n", "\n"), text.replace("\\n", "\n"))
        for raw in (CORPUS.parent / "pii_unseen.tsv").read_text(encoding="utf-8").splitlines()
        if raw and not raw.startswith("#")
        for loc, kind, value, text in [raw.split("\t")]
    ]
    result = measure(PiiMasker(), lines)
    print(
        f"\nunseen: recall {result.recall}, precision {result.precision}, "
        f"lookalikes {result.lookalike_precision:.1%}"
    )
    assert result.recall["PERSON"] >= 0.9 and result.recall["ADDRESS"] >= 0.9
    assert result.lookalike_precision >= 0.9


def test_batch_scan_masks_the_corpus_as_a_scan_per_value() -> None:
    """The processor scans a whole batch at once (`_Engine.find_many`): over the corpus, as chat
    content, a span attribute (plain and JSON) and a log body, the rows are those of a scan per value."""
    texts = [line.text for line in _corpus()]

    def batch() -> Batch:
        return Batch(
            inferences=[{"prompt_messages": [{"role": "user", "content": t}]} for t in texts],
            spans=[
                {"SpanAttributes": {"app.note": t, "gen_ai.input.messages": json.dumps([{"content": t}])}}
                for t in texts
            ],
            logs=[{"Body": t, "LogAttributes": {}} for t in texts],
        )

    batched, per_value = PiiMasker(), PiiMasker()
    per_value._batch_scan = False
    a, b = batch(), batch()
    batched.process(a)
    per_value.process(b)
    assert a == b
    assert sum(bool(row["pii_found"]) for row in a.inferences) > len(texts) // 2
