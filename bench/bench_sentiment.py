"""Micro-benchmark for sentiment scoring. Run: `python bench/bench_sentiment.py [--quick]`.

Prints ours vs the reference vaderSentiment side by side, in µs per text and MB/s, with the budget
(40 µs per 200-char text) next to our figure, plus the label agreement on the generated inputs.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from bench.bench_pii import calibrate, timeit
from inferline.core.records import Batch
from inferline.processors.sentiment import SentimentProcessor, SentimentScorer, label_for
from inferline.processors.sentiment_config import SentimentConfig

BUDGET_US = 40.0

OPENERS = [
    "Thanks, this answer was really helpful!",
    "The response was wrong and ignored my question.",
    "Not bad, but it could be more concise.",
    "I asked for Python and got JavaScript 😡",
    "Great explanation of the retry logic 👍",
    "It didn't work at all, the code crashes immediately.",
    "Okay.",
    "The summary is accurate and the tone is fine.",
    "Honestly the worst support chat I've had, totally useless!!",
    "Perfect, exactly what I needed :)",
]
FILLERS = [
    "I tried it again with the staging config.",
    "The second part about pagination was clear.",
    "Maybe add an example with error handling next time.",
    "It took a while to respond though.",
    "My colleague had the same experience yesterday.",
    "The links in the answer pointed to the right docs.",
]


def make_comment(rng: random.Random, size: int = 200) -> str:
    parts = [rng.choice(OPENERS)]
    while len(" ".join(parts)) < size:
        parts.append(rng.choice(FILLERS + OPENERS))
    return " ".join(parts)[:size]


def report(label: str, seconds: float, nbytes: float, budget: float | None = None) -> None:
    us = seconds * 1e6
    line = f"{label}: {us:.1f} µs/text, {nbytes / seconds / 1e6:.1f} MB/s"
    if budget is not None:
        line += f"  (budget {budget:.0f} µs/text: {'OK' if us <= budget else 'OVER'})"
    print(line)


def per_text(fn: Callable[[str], object], texts: list[str], min_time: float) -> float:
    def run() -> None:
        for t in texts:
            fn(t)

    return timeit(run, min_time) / len(texts)


def main() -> None:
    quick = "--quick" in sys.argv
    min_time = 0.2 if quick else 1.5
    rng = random.Random(11)
    comments = [make_comment(rng) for _ in range(200)]
    responses = [make_comment(rng, 2048) for _ in range(50)]
    ours = SentimentScorer()
    clipped = SentimentScorer(max_chars=SentimentConfig().max_chars)
    ref = SentimentIntensityAnalyzer()
    print(f"calibration loop {calibrate():.1f} µs")

    nbytes = sum(len(c.encode()) for c in comments) / len(comments)
    report(
        "sentiment.score 200-char comment (ours)", per_text(ours.score, comments, min_time), nbytes, BUDGET_US
    )
    report(
        "sentiment.score 200-char comment (vaderSentiment)",
        per_text(ref.polarity_scores, comments, min_time),
        nbytes,
    )

    rbytes = sum(len(r.encode()) for r in responses) / len(responses)
    report(
        f"sentiment.score 2KB response clipped to {clipped.max_chars} chars (ours)",
        per_text(clipped.score, responses, min_time),
        rbytes,
    )
    report("sentiment.score 2KB response, whole (ours)", per_text(ours.score, responses, min_time), rbytes)
    report(
        "sentiment.score 2KB response, whole (vaderSentiment)",
        per_text(ref.polarity_scores, responses, min_time),
        rbytes,
    )

    proc = SentimentProcessor()

    def batch_run() -> None:
        rows = [
            {
                "prompt_messages": [{"role": "user", "content": comments[i]}],
                "response_messages": [{"role": "assistant", "content": responses[i % len(responses)]}],
            }
            for i in range(100)
        ]
        proc.process(Batch(inferences=rows))

    row_us = timeit(batch_run, min_time) / 100 * 1e6
    print(f"sentiment.process inference row (200-char prompt + 2KB response): {row_us:.1f} µs/row")

    agree = sum(
        ours.score(c)[1] == label_for(ref.polarity_scores(c)["compound"]) for c in comments + responses
    )
    print(f"label agreement with vaderSentiment on these inputs: {agree}/{len(comments) + len(responses)}")


if __name__ == "__main__":
    main()
