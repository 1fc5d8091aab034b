"""The PII masker runs compiled (mypyc, `tools/compile_hot_path.py`): it must mask exactly as its
source does when interpreted. mypyc keeps Python's semantics in nearly everything, but not in
all (a generator given to `list.extend` was once read whole first, changing a result), so the
two are run side by side on the labeled corpus, on odd input and on rows of every kind."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from inferline.core.records import Batch
from inferline.processors import pii
from inferline.processors.pii_config import PiiConfig
from tests.test_pii_corpus import _corpus

pytestmark = pytest.mark.unit

CONFIGS = {
    "placeholder": {},
    "hash": {"mode": "hash", "hash_key": "k"},
    "only configured keys": {"mask_all_attributes": False, "allow_list": ["jane@example.com"]},
    "custom pattern": {"custom_patterns": [{"name": "EMPLOYEE", "regex": r"EMP-\d{6}"}]},
}

ODD = [
    "a" * 200_000,
    "x " * 50_000,
    "[" * 200 + "]" * 200,
    '{"k": ' * 100 + '"jane@example.com"' + "}" * 100,
    '{"a": "\\ud800 jane@example.com"}',
    "\ud800 bob@example.org",
    "data:image/png;base64,AAAA jane@example.com",
    '{"content": "Dear Anna Müller,\\nphone +49 30 1234567", "name": "Dr. Hans Weber"}',
    '[{"role": "user", "content": "card 4111 1111 1111 1111"},'
    ' {"role": "tool", "content": {"ip": "10.0.0.1"}}]',
    '{"cut": "Am\\u00e9lie Dubois at amelie@exam',
    "Ruf an: +49\u00a030\u00a01234567, Karte 4111\u202f1111\u202f1111\u202f1111, Mail jane@example\u200b.com",
    "",
    "short",
]


@pytest.fixture(scope="module")
def interpreted() -> Iterator[ModuleType]:
    if not str(pii.__file__).endswith((".so", ".pyd")):
        pytest.skip("the masker runs interpreted here (`make pure`, or no C compiler)")
    source = Path(pii.__file__).with_name("pii.py")
    spec = importlib.util.spec_from_file_location("pii_interpreted", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and NamedTuples look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def _batch(texts: list[str]) -> Batch:
    """Every place a text can be: messages, JSON and plain attributes, resource and event
    attributes, span names, log bodies and attributes, scores."""
    return Batch(
        inferences=[
            {
                "span_id": f"s{i}",
                "prompt_messages": [{"role": "user", "content": t}],
                "response_messages": [{"role": "assistant", "content": t[::-1]}],
            }
            for i, t in enumerate(texts)
        ],
        spans=[
            {
                "SpanId": f"s{i}",
                "SpanName": t[:40],
                "SpanAttributes": {
                    "gen_ai.input.messages": json.dumps([{"role": "user", "content": t}]),
                    "app.note": t,
                    "user.id": t[:20],
                },
                "ResourceAttributes": {"service.name": "svc", "host.name": t[:30]},
                "Events.Name": [t[:12]],
                "Events.Attributes": [{"gen_ai.completion": t}],
            }
            for i, t in enumerate(texts)
        ],
        logs=[{"Body": t, "LogAttributes": {"note": t}} for t in texts],
        scores=[{"comment": t} for t in texts[:5]],
    )


def _texts() -> list[str]:
    return [line.text for line in _corpus()] + ODD


@pytest.mark.parametrize("options", CONFIGS.values(), ids=CONFIGS.keys())
def test_the_compiled_masker_masks_as_its_source_does(
    interpreted: ModuleType, options: dict[str, Any]
) -> None:
    compiled_masker = pii.PiiMasker(PiiConfig.model_validate(options))
    interpreted_masker = interpreted.PiiMasker(PiiConfig.model_validate(options))
    texts = _texts()
    masked = 0
    for start in range(0, len(texts), 64):
        chunk = texts[start : start + 64]
        ours, theirs = _batch(chunk), _batch(chunk)
        compiled_masker.process(ours)
        interpreted_masker.process(theirs)
        for kind in ("inferences", "spans", "logs", "scores"):
            assert getattr(ours, kind) == getattr(theirs, kind), (kind, start)
        masked += sum(bool(row["pii_found"]) for row in ours.inferences)
        for text in chunk[:8]:
            assert compiled_masker.mask_text(text) == interpreted_masker.mask_text(text)
            assert compiled_masker.detect(text) == interpreted_masker.detect(text)
    assert masked > len(texts) // 2  # the comparison covered masking, not only clean text


def test_a_batch_masked_twice_is_masked_alike(interpreted: ModuleType) -> None:
    """The per-masker caches (key layouts, hash tokens) carry over between batches."""
    options = {"mode": "hash", "hash_key": "k"}
    compiled_masker = pii.PiiMasker(PiiConfig.model_validate(options))
    interpreted_masker = interpreted.PiiMasker(PiiConfig.model_validate(options))
    batch = _batch(_texts()[:100])
    for _ in range(2):
        ours, theirs = copy.deepcopy(batch), copy.deepcopy(batch)
        compiled_masker.process(ours)
        interpreted_masker.process(theirs)
        assert ours.inferences == theirs.inferences and ours.spans == theirs.spans
