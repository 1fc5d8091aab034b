"""Labeled tests for sentiment: accuracy on a hand-labeled set, specific clear cases, agreement
with the reference vaderSentiment, and the processor's four columns."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from pydantic import ValidationError
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from inferline.core.config import ProcessorSettings
from inferline.core.records import Batch, Row
from inferline.processors.feedback import FeedbackEnricher
from inferline.processors.sentiment import (
    SentimentConfig,
    SentimentProcessor,
    SentimentScorer,
    clip,
    head,
    label_for,
)

pytestmark = pytest.mark.unit

POS, NEU, NEG = "positive", "neutral", "negative"

# Hand-labeled: what a person reading the feedback/prompt would say. Some are hard for a lexicon
# model on purpose (sarcasm, domain words); MIN_ACCURACY below leaves room for those.
LABELED: list[tuple[str, str]] = [
    # plain positive / negative
    ("Thanks, this answer was really helpful!", POS),
    ("Great explanation, exactly what I needed.", POS),
    ("I love how clear and concise this is.", POS),
    ("Perfect, works like a charm.", POS),
    ("The response was wrong and useless.", NEG),
    ("This is terrible, the code crashes immediately.", NEG),
    ("I hate that it ignored my question.", NEG),
    ("Awful answer, completely broken.", NEG),
    # neutral / factual
    ("Please summarise the attached document in three bullet points.", NEU),
    ("What is the capital of France?", NEU),
    ("Convert this JSON to YAML.", NEU),
    ("The meeting is at 3pm in room 4.", NEU),
    ("Okay.", NEU),
    ("List the files in the current directory.", NEU),
    # negation
    ("This is not good at all.", NEG),
    ("The answer wasn't helpful.", NEG),
    ("Not bad at all, actually.", POS),
    ("I don't hate it.", POS),
    ("It never works.", NEG),
    ("Nothing about this was useful.", NEG),
    # boosters and dampeners
    ("The answer was extremely good.", POS),
    ("It was slightly disappointing.", NEG),
    ("Really awful formatting.", NEG),
    ("Kind of helpful, I guess.", POS),
    # ALL CAPS and punctuation emphasis
    ("This is GREAT!!!", POS),
    ("WORST answer EVER!!", NEG),
    ("Why is it so slow??", NEU),
    ("Amazing work!", POS),
    # contrastive "but"
    ("The code is fine, but the explanation is terrible.", NEG),
    ("It was slow, but the result is excellent.", POS),
    # emoji and emoticons
    ("Thanks 😀", POS),
    ("😡😡 useless bot", NEG),
    ("Works now :)", POS),
    ("Still broken :(", NEG),
    ("👍", POS),
    ("💔 it stopped working", NEG),
    # multilingual text where VADER's English lexicon still applies (loanwords, emoji, mixed)
    ("Super, merci beaucoup! 😀", POS),
    ("Das ist ein Problem, sehr bad.", NEG),
    ("Muy bien, perfect!", POS),
    ("ありがとう 👍 great", POS),
    ("C'est nul, horrible.", NEG),
    ("Die Antwort ist okay.", POS),
    # chatbot-style domain text
    ("I'm frustrated, the API keeps failing with errors.", NEG),
    ("Happy to help! Let me know if you have other questions.", POS),
    ("Sorry, I can't help with that request.", NEG),
    ("The deployment succeeded and all tests pass.", POS),
    ("Excellent, thank you so much!", POS),
    ("This is a waste of time.", NEG),
    ("Translate 'good morning' into Spanish.", NEU),  # a request; VADER scores the quoted "good"
    ("Set the timeout to 30 seconds and retry twice.", NEU),
]

# The labels are a person's, not VADER's, so a lexicon model misses some. Known misses (VADER's
# behaviour, reproduced exactly): "It never works." and "Nothing about this was useful." (no
# lexicon word / negation of a positive word out of range), "Please summarise the attached
# document ..." and "Okay." (mildly positive lexicon words), "👍" ("thumbs up" is not in the
# lexicon), "💔 ..." ("broken heart": broken -2.1 + heart +2.2), "Die Antwort ist okay." (German
# "die" read as English "die"), "Translate 'good morning' ..." (quoted words count). 42/50 = 84%.
MIN_ACCURACY = 0.8


@pytest.fixture(scope="module")
def scorer() -> SentimentScorer:
    return SentimentScorer()


@pytest.fixture(scope="module")
def reference() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def test_labeled_set_size() -> None:
    assert len(LABELED) >= 40
    assert {label for _, label in LABELED} == {POS, NEU, NEG}


def test_accuracy_on_labeled_set(scorer: SentimentScorer) -> None:
    wrong = [(text, want, scorer.score(text)) for text, want in LABELED if scorer.score(text)[1] != want]
    accuracy = 1 - len(wrong) / len(LABELED)
    assert accuracy >= MIN_ACCURACY, f"accuracy {accuracy:.2%}, wrong: {wrong}"


CLEAR_CASES = [
    ("Thanks, this answer was really helpful!", POS),
    ("This is terrible, the code crashes immediately.", NEG),
    ("What is the capital of France?", NEU),
    ("This is not good at all.", NEG),
    ("Not bad at all, actually.", POS),
    ("The code is fine, but the explanation is terrible.", NEG),
    ("It was slow, but the result is excellent.", POS),
    ("Thanks 😀", POS),
    ("😡😡 useless bot", NEG),
    ("Still broken :(", NEG),
    ("", NEU),
    ("   ", NEU),
]


@pytest.mark.parametrize(("text", "label"), CLEAR_CASES)
def test_clear_cases(scorer: SentimentScorer, text: str, label: str) -> None:
    compound, got = scorer.score(text)
    assert got == label
    assert -1.0 <= compound <= 1.0


def test_rules_move_the_score_the_right_way(scorer: SentimentScorer) -> None:
    good = scorer.compound("The answer was good.")
    assert scorer.compound("The answer was very good.") > good  # booster
    assert scorer.compound("The answer was somewhat good.") < good  # dampener
    assert scorer.compound("The answer was GOOD.") > good  # caps emphasis (mixed case)
    assert scorer.compound("The answer was good!!!") > good  # exclamation
    assert scorer.compound("The answer was not good.") < 0  # negation
    assert scorer.compound("The answer was not really that good.") < 0  # negation 3 tokens back
    assert scorer.compound("Great 😀") > scorer.compound("Great")  # emoji description adds valence


def test_score_range_and_normalisation(scorer: SentimentScorer) -> None:
    compound, label = scorer.score("love love love love love love love love love love!!!!")
    assert 0.95 < compound <= 1.0 and label == POS
    compound, label = scorer.score("hate hate hate hate hate hate hate hate!!!!")
    assert -1.0 <= compound < -0.95 and label == NEG


def test_label_thresholds() -> None:
    assert label_for(0.05) == POS and label_for(0.0499) == NEU
    assert label_for(-0.05) == NEG and label_for(-0.0499) == NEU


def test_agreement_with_reference_on_labeled_set(
    scorer: SentimentScorer, reference: SentimentIntensityAnalyzer
) -> None:
    agree = sum(
        scorer.score(text)[1] == label_for(reference.polarity_scores(text)["compound"]) for text, _ in LABELED
    )
    assert agree / len(LABELED) == 1.0
    for text, _ in LABELED:
        assert scorer.compound(text) == pytest.approx(
            reference.polarity_scores(text)["compound"], abs=1e-4
        ), text


def test_every_multi_word_idiom_and_booster_scores_as_the_reference(
    scorer: SentimentScorer, reference: SentimentIntensityAnalyzer
) -> None:
    """The idiom check runs only near a marker word of an idiom: each idiom and multi-word
    booster of VADER's lists, in a sentence around a lexicon word, scores as vaderSentiment does."""
    from vaderSentiment.vaderSentiment import BOOSTER_DICT, SPECIAL_CASES

    phrases = [k for k in [*SPECIAL_CASES, *BOOSTER_DICT] if " " in k]
    assert phrases
    for phrase in phrases:
        for text in (f"The answer was {phrase} good.", f"Honestly, {phrase} the result is great"):
            want = reference.polarity_scores(text)["compound"]
            assert scorer.compound(text) == pytest.approx(want, abs=1e-4), text


def test_agreement_with_reference_on_random_text(
    scorer: SentimentScorer, reference: SentimentIntensityAnalyzer
) -> None:
    """Random word salads over the lexicon plus rule trigger words: exercises every rule combination
    ("but" with repeated values, negations at each distance, idioms, caps, punctuation)."""
    rng = random.Random(20250820)
    vocab = list(scorer.lexicon)[::7] + [
        "not", "very", "but", "BUT", "no", "never", "so", "this", "kind", "of", "least", "at", "the",
        "without", "doubt", "isn't", "EXTREMELY", "GOOD", "BAD", "!", "?", "sort", "really", "kiss",
        "death", "yeah", "right", "bad", "ass", ":)", ":(", "😀", "😡", "👍", "nor", "or", "n't",
    ] * 10  # fmt: skip
    mismatches = []
    for _ in range(2000):
        text = " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 25))) + rng.choice(
            ["", "!", "??", "."]
        )
        want = reference.polarity_scores(text)["compound"]
        got = scorer.compound(text)
        if abs(got - want) > 1e-4:
            mismatches.append((text, want, got))
    assert not mismatches, mismatches[:5]


def test_clip_keeps_head_and_tail() -> None:
    text = "Thanks so much! " + "filler words here " * 200 + "But this is still broken."
    clipped = clip(text, 100)
    assert len(clipped) <= 110
    assert clipped.startswith("Thanks so much!") and clipped.endswith("still broken.")
    assert clip("short", 100) == "short"


# --- the processor --------------------------------------------------------------------------


def _row(prompt_messages: object, response_messages: object) -> Row:
    return {"prompt_messages": prompt_messages, "response_messages": response_messages, "user_id": "u1"}


def test_processor_sets_four_columns() -> None:
    row = _row(
        [
            {"role": "system", "content": "You are a terrible, awful assistant."},  # not the prompt
            {"role": "user", "content": "I love this product"},  # not the last user message
            {"role": "assistant", "content": "Glad to hear!"},
            {"role": "user", "content": "This answer is useless and wrong."},
        ],
        [{"role": "assistant", "content": "Happy to help, great question!"}],
    )
    SentimentProcessor().process(Batch(inferences=[row]))
    assert row["prompt_sentiment_label"] == NEG and row["prompt_sentiment"] < -0.05
    assert row["response_sentiment_label"] == POS and row["response_sentiment"] > 0.05
    scorer = SentimentScorer()
    assert row["prompt_sentiment"] == scorer.compound("This answer is useless and wrong.")


def test_processor_content_parts_and_missing_text() -> None:
    parts_row = _row(
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Thanks, great work"}, {"type": "image_url"}],
            }
        ],
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "name": "f", "arguments": "{}"}],
            }
        ],
    )
    empty_row = _row([], None)
    SentimentProcessor().process(Batch(inferences=[parts_row, empty_row]))
    assert parts_row["prompt_sentiment_label"] == POS
    assert parts_row["response_sentiment"] is None and parts_row["response_sentiment_label"] == ""
    assert empty_row["prompt_sentiment"] is None and empty_row["prompt_sentiment_label"] == ""
    assert empty_row["response_sentiment"] is None and empty_row["response_sentiment_label"] == ""


def test_processor_fields_and_head_and_tail_of_the_response() -> None:
    long_response = "Terrible. " + "neutral filler text " * 300 + " Excellent, wonderful, great!"
    row = _row(
        [{"role": "user", "content": "Great, thanks!"}], [{"role": "assistant", "content": long_response}]
    )
    config = SentimentConfig(fields=["response"], prompt_chars=200, response_head_chars=0, domain_rules=False)
    SentimentProcessor(config).process(Batch(inferences=[row]))
    assert row["prompt_sentiment"] is None and row["prompt_sentiment_label"] == ""
    # response_head_chars 0: head and tail are scored as for prompts (prompt_chars/2 each):
    # "Terrible" and the positive ending, not 6,000 chars of filler.
    assert row["response_sentiment"] == SentimentScorer().compound(clip(long_response, 200))
    assert row["response_sentiment_label"] == POS


def test_processor_scores_the_head_of_the_response_by_default() -> None:
    long_response = "Sorry, that was wrong. " + "neutral filler text " * 300 + " Excellent, wonderful, great!"
    row = _row([{"role": "user", "content": "hi"}], [{"role": "assistant", "content": long_response}])
    SentimentProcessor().process(Batch(inferences=[row]))
    assert row["response_sentiment_label"] == NEG  # the opening apology, not the cheerful tail


def test_processor_an_angry_tail_does_not_flip_a_cheerful_response() -> None:
    # Users read an answer's tone in its opening; the rest is content (here a quoted error log).
    response = (
        "Happy to help, great question! "
        + "The function reads the file and returns the rows. " * 20
        + "Traceback: fatal error, terrible crash, the worst failure, awful, hate it."
    )
    row = _row([{"role": "user", "content": "hi"}], [{"role": "assistant", "content": response}])
    SentimentProcessor().process(Batch(inferences=[row]))
    assert row["response_sentiment_label"] == POS
    # The tail alone is negative: scored whole (head + tail), the call would not read as cheerful.
    assert SentimentScorer(domain=True).score(response[-80:])[1] == NEG
    assert row["response_sentiment"] == SentimentScorer(domain=True).compound(head(response, 80))


def test_processor_scores_the_opening_and_closing_of_the_last_user_message() -> None:
    pasted = "def load(path):\n    return [line.split() for line in open(path)]\n" * 10
    middle_complaint = "This is a terrible, awful, useless answer. "
    opening_and_closing = "Thanks, that works great! " + pasted + middle_complaint + pasted + "Perfect."
    row = _row(
        [
            {"role": "user", "content": "This is wrong and useless."},  # an earlier turn: not scored
            {"role": "assistant", "content": "Sorry, here is a fix."},
            {"role": "user", "content": opening_and_closing},
        ],
        [],
    )
    SentimentProcessor().process(Batch(inferences=[row]))
    # The complaint pasted between the opening and the closing is not the user's tone.
    assert row["prompt_sentiment_label"] == POS
    assert row["prompt_sentiment"] == SentimentScorer(domain=True).compound(clip(opening_and_closing, 120))
    assert "terrible" not in clip(opening_and_closing, 120)
    # A short last user message is scored whole.
    short = "Thanks, but the second half is wrong and useless."
    row = _row([{"role": "user", "content": short}], [])
    SentimentProcessor().process(Batch(inferences=[row]))
    assert row["prompt_sentiment"] == SentimentScorer(domain=True).compound(short)
    assert row["prompt_sentiment_label"] == NEG


def test_feedback_comments_are_scored_whole() -> None:
    # The processor scores 60 + 60 characters of a long prompt; a feedback comment (up to
    # max_chars, 300) is scored whole: its judgement in the middle counts.
    comment = (
        "I asked about the billing export for last month and the answer came back quickly. "
        "The numbers were wrong and the totals were useless. "
        "I will look at the invoices tomorrow with my colleague."
    )
    assert 120 < len(comment) <= SentimentConfig().max_chars
    rows: list[Row] = [{"comment": comment}]
    FeedbackEnricher.from_settings(ProcessorSettings(chain=["sentiment"])).process(rows)
    whole = SentimentScorer(domain=True).score(comment)
    assert (rows[0]["comment_sentiment"], rows[0]["comment_sentiment_label"]) == whole
    assert whole[1] == NEG
    assert SentimentScorer(domain=True).score(clip(comment, 120))[1] != NEG  # what a prompt gets


def test_processor_disabled_and_config_validation() -> None:
    row = _row([{"role": "user", "content": "great"}], [])
    SentimentProcessor(SentimentConfig(enabled=False)).process(Batch(inferences=[row]))
    assert "prompt_sentiment" not in row
    with pytest.raises(ValidationError):
        SentimentConfig(fields=["title"])
    with pytest.raises(ValidationError):
        SentimentConfig(max_chars=0)
    with pytest.raises(ValidationError):
        SentimentConfig(prompt_chars=10)


def test_processor_survives_bad_row() -> None:
    bad = _row([{"role": "user", "content": 12345}], "not a list")
    good = _row([{"role": "user", "content": "awful"}], [])
    SentimentProcessor().process(Batch(inferences=[bad, good]))
    assert bad["prompt_sentiment"] is None and bad["response_sentiment"] is None
    assert good["prompt_sentiment_label"] == NEG


# --- the labeled feedback set: tuned on one part, measured on the other ------------------------

DATA = Path(__file__).parent / "data"
HELD_OUT_MIN_ACCURACY = 0.85


def _labeled(name: str) -> list[tuple[str, str]]:
    rows = []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            label, text = line.split("\t", 1)
            rows.append((text, label))
    return rows


def _accuracy(
    scorer: SentimentScorer, rows: list[tuple[str, str]]
) -> tuple[float, list[tuple[str, str, str]]]:
    wrong = [(text, want, got) for text, want in rows if (got := scorer.score(text)[1]) != want]
    return 1 - len(wrong) / len(rows), wrong


def test_feedback_sets_are_large_separate_and_balanced() -> None:
    tune, held_out = _labeled("sentiment_tune.tsv"), _labeled("sentiment_heldout.tsv")
    assert len(tune) + len(held_out) >= 300 and len(held_out) >= 150
    assert not {t for t, _ in tune} & {t for t, _ in held_out}, "a comment is in both parts"
    for rows in (tune, held_out):
        counts = {label: sum(1 for _, lab in rows if lab == label) for label in (POS, NEU, NEG)}
        assert min(counts.values()) >= len(rows) // 4, counts


def test_held_out_accuracy_with_domain_rules() -> None:
    """Three-class accuracy on comments the domain rules were not fitted on (`python -m pytest
    tests/test_sentiment.py -k held_out -rA` prints the figures quoted in docs/sentiment.md)."""
    held_out = _labeled("sentiment_heldout.tsv")
    accuracy, wrong = _accuracy(SentimentScorer(domain=True), held_out)
    vader, _ = _accuracy(SentimentScorer(), held_out)
    print(f"held-out: domain {accuracy:.1%}, plain VADER {vader:.1%} ({len(held_out)} comments)")
    assert accuracy >= HELD_OUT_MIN_ACCURACY, f"accuracy {accuracy:.2%}, wrong: {wrong}"
    assert accuracy > vader


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Great, another wrong answer.", NEG),  # sarcasm
        ("Thanks for nothing.", NEG),
        ("Not bad at all.", POS),  # negated negative
        ("Not perfect, but good enough.", POS),  # negation stops at the clause
        ("It hallucinated the API.", NEG),  # domain word
        ("Spot on!", POS),  # domain phrase
        ("Das funktioniert nicht.", NEG),  # negation after the verb
        ("Ça ne marche pas.", NEG),  # ne ... pas negates once
        ("Please help me write a cover letter.", NEU),  # a request
        ("👎", NEG),
    ],
)
def test_domain_rules_on_the_patterns_that_break_vader(text: str, label: str) -> None:
    assert SentimentScorer(domain=True).score(text)[1] == label


@pytest.mark.parametrize(
    "text",
    ["a" * 1_000_000, "great " * 100_000, "not bad \ud800 " * 1_000, "🙄" * 100_000],
    ids=["1 MB of one letter", "100k tokens", "lone surrogates", "100k emoji"],
)
def test_pathological_text_is_scored_without_failing(text: str) -> None:
    row = _row([{"role": "user", "content": text}], [{"role": "assistant", "content": text}])
    SentimentProcessor().process(Batch(inferences=[row]))
    assert row["prompt_sentiment_label"] in (POS, NEU, NEG)
    assert row["response_sentiment_label"] in (POS, NEU, NEG)


def _unescape(match: re.Match[str]) -> str:
    return {"n": "\n", "t": "\t"}.get(match[1], match[1])


def test_scores_are_unchanged_on_stored_texts() -> None:
    """Every text of `data/sentiment_expected.tsv` (the labeled sets with variants and word salads
    over what the rules read; `data/make_sentiment_expected.py`) gets exactly the compound score
    stored for it, plain and with the domain rules: the scorer's speed-ups move no score."""
    plain, domain = SentimentScorer(), SentimentScorer(domain=True)
    lines = (DATA / "sentiment_expected.tsv").read_text(encoding="utf-8").splitlines()
    assert len(lines) > 4000
    moved = []
    for line in lines:
        want_plain, want_domain, escaped = line.split("\t", 2)
        text = re.sub(r"\\(.)", _unescape, escaped)
        got = (repr(plain.compound(text)), repr(domain.compound(text)))
        if got != (want_plain, want_domain):
            moved.append((text, (want_plain, want_domain), got))
    assert not moved, moved[:5]


def test_the_token_cache_stays_bounded_and_moves_no_score(reference: SentimentIntensityAnalyzer) -> None:
    """Each distinct token's record is kept for the next text (`_TOKEN_CACHES`); a stream of ids
    and names never seen before must not grow it past its bound, and a text scores the same on
    first sight, from the cache, and after the cache was emptied."""
    from inferline.processors.sentiment import _TOKEN_CACHE_MAX, _TOKEN_CACHES

    scorer = SentimentScorer(domain=True)
    plain = SentimentScorer()
    text = "Not GREAT, but the order-4411 fix was really helpful!! didn't break anything"
    first = scorer.compound(text), plain.compound(text)
    assert first == (scorer.compound(text), plain.compound(text))
    for start in range(0, 3 * _TOKEN_CACHE_MAX // 2, 500):
        ids = " ".join(f"ticket-{i} great" for i in range(start, start + 500))
        scorer.compound(ids)
        plain.compound(ids)
        assert len(_TOKEN_CACHES[True]) <= _TOKEN_CACHE_MAX
        assert len(_TOKEN_CACHES[False]) <= _TOKEN_CACHE_MAX
    assert (scorer.compound(text), plain.compound(text)) == first
    assert plain.compound(text) == pytest.approx(reference.polarity_scores(text)["compound"], abs=1e-4)
