"""Micro-benchmark for PII masking. Run: `python bench/bench_pii.py [--quick]`.

Prints one line per case: µs per record and MB/s, with the budget (25 µs per 2 KB record) next to
the figure. Inputs are realistic 2 KB chat records: assistant-style prose with a few PII values
(email, phone, card, IBAN, key) and the lookalikes that must survive (order numbers, UUIDs, ISO
timestamps, versions, prices, token counts, trace/span ids).
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inferline.core.records import Batch
from inferline.processors import pii as pii_module
from inferline.processors.pii import PiiMasker
from inferline.processors.pii_config import PiiConfig

BUDGET_US = 25.0
RECORD_BYTES = 2048

PROSE = [
    "Sure! Here's a step-by-step breakdown of what happened with your account and the charges.",
    "First, the subscription renewed automatically because auto-renew was enabled in your settings.",
    "Second, the usage spike came from the batch job that ran overnight and retried several times.",
    "If you want, I can walk you through disabling auto-renew or capping usage going forward.",
    "The model answered in 350 ms and used 1200 tokens for the prompt and 312 for the completion.",
    "We upgraded the SDK from 1.2.3 to v2.10.0-rc1 last week, so the retry policy changed as well.",
    "Your order 1234567 (ref #A-99812) was placed on 2025-08-20T10:05:00.250Z and shipped the next day.",
    "The invoice says $1,234.56 plus 19.99 EUR shipping; the discount code was applied correctly.",
    "Trace 4bf92f3577b34da6a3ce929d0e0e4736, span 00f067aa0ba902b7, "
    "request 123e4567-e89b-12d3-a456-426614174000.",
    "Let me know whether you'd like a refund to the original payment method or store credit instead.",
    "Ich habe die Rechnung geprüft und die Gutschrift wurde gestern veranlasst, vielen Dank für Ihre Geduld.",
    "Merci pour votre message, nous avons bien reçu votre demande et nous revenons vers vous rapidement.",
]
PII = [
    "You can reach me at jane.doe@example.com",
    "call me on +1 415 555 0132 after five",
    "my card is 4111 1111 1111 1111, expiry 12/27",
    "please refund to DE89 3704 0044 0532 0130 00",
    "the server at 10.0.3.17 keeps timing out",
    "here is my key sk-proj-Xy12abCD34efGH56ijKL78mnOP90",
    "or the office line (415) 555-0132",
]


def make_record(rng: random.Random, n_pii: int = 3, prose: list[str] = PROSE) -> str:
    parts: list[str] = []
    pii = rng.sample(PII, n_pii)
    while len(" ".join(parts).encode()) < RECORD_BYTES:
        parts.append(rng.choice(prose))
        if pii and rng.random() < 0.3:
            parts.append(pii.pop() + ".")
    parts.extend(p + "." for p in pii)
    text = " ".join(parts).encode()[:RECORD_BYTES].decode("utf-8", "ignore")
    return text


def timeit(fn: Callable[[], object], min_time: float = 0.5) -> float:
    """Seconds per call: the minimum over many short runs (robust to a busy machine: other
    processes only ever add time, so the fastest run is the least disturbed one)."""
    fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt > 0.01:
            break
        n *= 2
    best = dt / n
    deadline = time.perf_counter() + min_time
    runs = 0
    while runs < 7 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
        runs += 1
    return best


def calibrate() -> float:
    """µs for a fixed pure-Python workload, printed so figures from different machines (or a
    busy one) can be compared: ~10 µs on an idle modern x86 core."""
    data = list(range(1000))
    return timeit(lambda: sum(x * 2 for x in data), 0.3) * 1e6


def report(
    label: str, seconds: float, nbytes: float, unit: str = "record", budget: float | None = None
) -> None:
    us = seconds * 1e6
    mbs = nbytes / seconds / 1e6
    line = f"{label}: {us:.1f} µs/{unit}, {mbs:.0f} MB/s"
    if budget is not None:
        line += f"  (budget {budget:.0f} µs/{unit}: {'OK' if us <= budget else 'OVER'})"
    print(line)


def main() -> None:
    quick = "--quick" in sys.argv
    min_time = 0.2 if quick else 2.0
    rng = random.Random(7)
    records = [make_record(rng) for _ in range(64)]
    clean = [make_record(rng, 0) for _ in range(64)]
    japanese = [
        ("お問い合わせありがとうございます。ご注文の件について確認いたしました。" * 12)[:300]
        + " 連絡先は jane.doe@example.com、電話は +81 3-1234-5678 です。"
        + r
        for r in records[:64]
    ]
    japanese = [j.encode()[:RECORD_BYTES].decode("utf-8", "ignore") for j in japanese]
    masker = PiiMasker()
    nbytes = sum(len(r.encode()) for r in records) / len(records)

    def run_all(texts: list[str], m: PiiMasker = masker) -> Callable[[], None]:
        def f() -> None:
            for t in texts:
                m.mask_text(t)

        return f

    print(
        f"engine: {'hyperscan' if masker._engine.dbs else 're fallback'}; record ~{nbytes:.0f} B;"
        f" calibration loop {calibrate():.1f} µs"
    )
    report(
        "pii.mask_text 2KB record, 3 PII", timeit(run_all(records), min_time) / 64, nbytes, budget=BUDGET_US
    )
    report(
        "pii.mask_text 2KB record, no PII", timeit(run_all(clean), min_time) / 64, nbytes, budget=BUDGET_US
    )
    jbytes = sum(len(j.encode()) for j in japanese) / len(japanese)
    report(
        "pii.mask_text 2KB Japanese+English",
        timeit(run_all(japanese), min_time) / 64,
        jbytes,
        budget=BUDGET_US,
    )
    hashed = PiiMasker(PiiConfig(mode="hash", hash_key="bench-key"))
    report(
        "pii.mask_text 2KB record, mode=hash",
        timeit(run_all(records, hashed), min_time) / 64,
        nbytes,
        budget=BUDGET_US,
    )

    # A span attribute holding OTel GenAI messages as JSON: a clean one costs one pre-scan of the raw
    # string; one with PII is pre-scanned, parsed and its string leaves scanned again.
    def attribute(user: str, assistant: str) -> str:
        return orjson.dumps(
            [
                {"role": "system", "parts": [{"type": "text", "content": PROSE[0]}]},
                {"role": "user", "parts": [{"type": "text", "content": user[:900]}]},
                {"role": "assistant", "parts": [{"type": "text", "content": assistant[:900]}]},
            ]
        ).decode()

    for label, attrs in (
        ("clean", [attribute(clean[i], clean[i + 1]) for i in range(16)]),
        ("with PII", [attribute(records[i], clean[i]) for i in range(16)]),
    ):
        abytes = sum(len(a.encode()) for a in attrs) / len(attrs)

        def run_attrs(attrs: list[str] = attrs) -> None:
            for a in attrs:
                masker._mask_str(a, {}, pii_module.MESSAGE_SKIP_KEYS)

        report(
            f"pii JSON attribute gen_ai.input.messages, {label}",
            timeit(run_attrs, min_time) / len(attrs),
            abytes,
            unit="attribute",
            budget=BUDGET_US * abytes / RECORD_BYTES,
        )

    # The processor over a batch: per inference row with a 2 KB prompt + 2 KB response.
    def batch_run() -> None:
        rows = [
            {
                "prompt_messages": [{"role": "user", "content": records[i]}],
                "response_messages": [{"role": "assistant", "content": clean[i]}],
            }
            for i in range(64)
        ]
        masker.process(Batch(inferences=rows))

    report(
        "pii.process inference row (2KB+2KB)",
        timeit(batch_run, min_time) / 64,
        nbytes * 2,
        unit="row",
        budget=BUDGET_US * 2,
    )

    # Justification for the engine: the same detectors with Hyperscan switched off.
    saved = pii_module._hs
    pii_module._hs = None
    try:
        fallback = PiiMasker()
    finally:
        pii_module._hs = saved
    report(
        "pii.mask_text 2KB record, re fallback (no hyperscan)",
        timeit(run_all(records[:16], fallback), min_time) / 16,
        nbytes,
        budget=BUDGET_US,
    )


if __name__ == "__main__":
    main()
