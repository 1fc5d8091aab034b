"""Writes `sentiment_expected.tsv`: texts with the compound scores that `SentimentScorer` gave them
when the file was made (`python tests/data/make_sentiment_expected.py`, run at b6cd464, before the
scorer was made faster). tests/test_sentiment.py checks that the scorer still gives each of them
exactly the same score, plain VADER and with the domain rules: a change that is meant to make the
scorer faster must not move any score. Regenerate it only for a change that is meant to move scores.

The texts: both labeled comment sets with variants (upper/lower case, emphasis, typographic
apostrophes, a "but" clause, a sarcastic or negating or request opening), and word salads over
everything the rules read (lexicon words, boosters, negators, idioms, domain words and phrases,
request and sarcasm openers, emoji, punctuation attached to words). Every line is
`plain<TAB>domain<TAB>text`, with `\\n`, `\\t` and `\\\\` escaped in the text.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from inferline.processors import sentiment as s  # noqa: E402
from inferline.processors import sentiment_domain as d  # noqa: E402


def escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def texts() -> list[str]:
    comments = []
    for name in ("sentiment_tune.tsv", "sentiment_heldout.tsv"):
        for line in (HERE / name).read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#"):
                comments.append(line.split("\t", 1)[1])
    out = list(comments)
    for t in comments:
        out += [t.upper(), t.lower(), t + "!!!", t + " ??", t.replace("'", "\u2019"), "Great, " + t]
        out += ["Nothing " + t.lower(), "Please " + t.lower(), t + " but " + t.lower()]
    rng = random.Random(20261204)
    vocab = sorted(s._LEXICON)[::40] + sorted(d.DOMAIN_WORDS) + [w for p in d.PHRASES for w in p]
    vocab += sorted(s._DOMAIN_RULE_WORDS) + sorted(d.REQUEST_STARTERS)[::3] + sorted(d.SARCASM_OPENERS)
    vocab += sorted(d.OPENING_NEGATORS) + sorted(k for k in {**s._BOOSTERS, **s._SPECIAL_CASES} if " " in k)
    vocab += ["but", "aber", "mais", "however", "at", "very", "of", "the", "or", "nor", "didn\u2019t"]
    vocab += [*sorted(d.EMOJI_OVERRIDES), "😀", "😡", ":)", ":(", "!", "?", ",", ".", "123", "(bad)"]

    def word() -> str:
        w, r = rng.choice(vocab), rng.random()
        if r < 0.1:
            return w.upper()
        if r < 0.15:
            return w.capitalize()
        if r < 0.25:
            return w + rng.choice([",", ".", "!", "?", ";", "!!", "'s"])
        return w

    for _ in range(1200):
        out.append(" ".join(word() for _ in range(rng.randint(1, 20))) + rng.choice(["", "!", "??", "."]))
    return list(dict.fromkeys(out))


def main() -> None:
    plain, domain = s.SentimentScorer(), s.SentimentScorer(domain=True)
    lines = [f"{plain.compound(t)!r}\t{domain.compound(t)!r}\t{escape(t)}" for t in texts()]
    (HERE / "sentiment_expected.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} texts")


if __name__ == "__main__":
    main()
