"""Sentiment of prompts, responses and (later) feedback comments.

`SentimentScorer` is a re-implementation of VADER's compound score (Hutto & Gilbert, 2014) with the
same lexicon, emoji descriptions and rules, restructured for speed. The reference
`vaderSentiment.SentimentIntensityAnalyzer.polarity_scores` costs ~65 µs per 200-char text because
it re-lowercases the whole token list inside every rule (O(n^2)), rebuilds strings for idiom checks
at every lexicon word, and appends emoji descriptions character by character. Here:

* emoji are looked up among the non-ASCII characters only (one regex pass) and replaced;
* each distinct token is worked out once (a bounded cache of `Token` records: VADER's word, its
  lexicon valence, and flags for what the rules ask of it: rule word, "n't", ALL CAPS, clause end,
  domain phrase or negator); a text is then one cache lookup per token and one loop over the
  records, instead of a pass over its words per question;
* a lexicon word runs the rules only when a word that a rule reads is near it (`_RULE_WORDS`),
  or it is ALL CAPS, or "n't" precedes it; the others (most) take their lexicon valence as is;
* the idiom check (SPECIAL_CASES, multi-word boosters) runs only when an idiom's marker word is
  near;
* only the compound score is computed (pos/neu/neg ratios are not needed).

Rules kept (as in vaderSentiment 3.3.2): booster/dampener words up to 3 tokens back (scaled 1,
0.95, 0.9), negation within 3 tokens (N_SCALAR -0.74, "n't" contractions, "never so/this",
"without doubt"), "no" as negator, "least", the contrastive "but" (before x0.5, after x1.5), ALL-CAPS
emphasis when the text mixes case, "!" (up to 4) and "??"+ amplification, special idioms ("the
shit", "kiss of death", ...), and normalisation score/sqrt(score^2 + 15). Labels use VADER's
conventional thresholds: compound >= 0.05 positive, <= -0.05 negative, else neutral.
"""

from __future__ import annotations

import logging
import math
import re
import string
from bisect import bisect_right
from pathlib import Path
from typing import Any, Final, final

import vaderSentiment
from vaderSentiment.vaderSentiment import BOOSTER_DICT, C_INCR, N_SCALAR, NEGATE, SPECIAL_CASES

from inferline.core.records import Batch, Row
from inferline.processors.sentiment_config import SentimentConfig
from inferline.processors.sentiment_domain import (
    DOMAIN_WORDS,
    EMOJI_OVERRIDES,
    EXTRA_NEGATORS,
    OPENING_NEGATORS,
    PHRASE_FIRST_WORDS,
    PHRASES,
    POST_NEGATORS,
    REQUEST_STARTERS,
    REQUEST_STRONG,
    SARCASM_EMOJI,
    SARCASM_OPENERS,
)

log = logging.getLogger(__name__)

POSITIVE_THRESHOLD: Final = 0.05
NEGATIVE_THRESHOLD: Final = -0.05

_C_INCR: Final = C_INCR
_N_SCALAR: Final = N_SCALAR
_BOOSTERS: Final[dict[str, float]] = BOOSTER_DICT
_SPECIAL_CASES: Final[dict[str, float]] = SPECIAL_CASES
_NEGATE: Final = frozenset(NEGATE)
# One word of each multi-word idiom or booster ("the shit", "kiss of death", "kind of"): an idiom
# can only match where all of its words are, so the idiom check runs only where one of these is
# near (not "the", "to", "of", which are near most words).
# (tests/test_sentiment.py checks that every idiom has one.)
_IDIOM_MARKERS: Final = frozenset(
    {"shit", "bomb", "ass", "bus", "yeah", "kiss", "die", "beating", "enough", "kind", "sort"}
)
# Words that make VADER's rules do more than take a lexicon word's valence as is when they are
# within three tokens before it or two after it: boosters, negations, "no", "least", "never
# so/this", "without doubt", "so"/"this" (VADER's quirk: one token back they amplify x1.25),
# idiom markers. A lexicon word with none of them near (and not ALL CAPS, no "n't" before it)
# skips the rules: most of them, as a text has few boosters and negations.
_RULE_WORDS: Final = frozenset(
    {*(k for k in _BOOSTERS if " " not in k), *_NEGATE, *_IDIOM_MARKERS}
    | {"no", "never", "so", "this", "without", "doubt", "least"}
)
_PUNCT: Final = string.punctuation


def _negated(word_lower: str, negate: frozenset[str] = _NEGATE) -> bool:
    return word_lower in negate or "n't" in word_lower


def _load_lexicons() -> tuple[dict[str, float], dict[str, str]]:
    """The lexicon and emoji descriptions shipped inside the vaderSentiment package (no network)."""
    base = Path(vaderSentiment.__file__).resolve().parent
    lexicon: dict[str, float] = {}
    for line in (base / "vader_lexicon.txt").read_text(encoding="utf-8").rstrip("\n").split("\n"):
        if line:
            word, measure = line.strip().split("\t")[0:2]
            lexicon[word] = float(measure)
    emoji: dict[str, str] = {}
    for line in (base / "emoji_utf8_lexicon.txt").read_text(encoding="utf-8").rstrip("\n").split("\n"):
        char, description = line.strip().split("\t")[0:2]
        # VADER compares one character at a time, so multi-codepoint sequences never match there.
        if len(char) == 1:
            # VADER inserts a space before a description (unless one is there) and none after.
            emoji[char] = " " + description
    return lexicon, emoji


_LEXICON, _EMOJI = _load_lexicons()
# Emoji are found with one C-level set intersection over the text's non-ASCII characters (one
# regex pass picks them out: half the cost of intersecting every character of a 300-char text),
# then replaced with str.replace. (`str.translate` with the 1,200-entry dict costs ~80 ns per
# character, as every missing key raises inside; a regex character class of non-BMP characters
# is slower still.)
_EMOJI_CHARS: Final = frozenset(_EMOJI)
_NON_ASCII: Final = re.compile(r"[^\x00-\x7f]")


def label_for(compound: float) -> str:
    if compound >= POSITIVE_THRESHOLD:
        return "positive"
    if compound <= NEGATIVE_THRESHOLD:
        return "negative"
    return "neutral"


_DOMAIN_LEXICON: Final = {**_LEXICON, **DOMAIN_WORDS}
for _phrase, _valence in PHRASES.items():
    _DOMAIN_LEXICON["_".join(_phrase)] = _valence
# Words set to 0 are not sentiment words here ("please", "help"): out of the lexicon, so the
# rules never run for them.
for _word in [w for w, v in _DOMAIN_LEXICON.items() if v == 0.0]:
    del _DOMAIN_LEXICON[_word]
_DOMAIN_NEGATE: Final = _NEGATE | EXTRA_NEGATORS
_DOMAIN_RULE_WORDS: Final = _RULE_WORDS | EXTRA_NEGATORS | POST_NEGATORS
_DOMAIN_EMOJI: Final = {**_EMOJI, **EMOJI_OVERRIDES}
_DOMAIN_EMOJI_CHARS: Final = frozenset(_DOMAIN_EMOJI)
# Negators, before the verb or after it (domain mode: a `Token` flag, `_NEGATES`).
_NEGATING: Final = _DOMAIN_NEGATE | POST_NEGATORS
_CLAUSE_END: Final = frozenset(",.;:!?")
_CLAUSE_WORDS: Final = frozenset({"but", "aber", "mais", "pero", "ma", "maar", "however"})
# First words that a domain rule reads (see _domain_rules); SARCASM_OPENERS also as second word.
_OPENING_RULE_WORDS: Final = OPENING_NEGATORS | SARCASM_OPENERS | REQUEST_STARTERS
# The phrases per first word and second word, longest first: (the words after the second, the
# joined token). Most first words ("like", "not", "no") are not followed by a second word.
_PHRASES_BY_START: Final[dict[str, dict[str, list[tuple[tuple[str, ...], str]]]]] = {}
for _phrase in sorted(PHRASES, key=len, reverse=True):
    _PHRASES_BY_START.setdefault(_phrase[0], {}).setdefault(_phrase[1], []).append(
        (_phrase[2:], "_".join(_phrase))
    )


# What the rules read of a token, as bits of `Token.flags`.
_IN_LEXICON: Final = 1
_RULE_WORD: Final = 2  # in _RULE_WORDS (the scorer's)
_HAS_NT: Final = 4  # the word contains "n't": negates the three words after it
_RAW_NT: Final = 8  # the token as written contains "n't"
_ALL_CAPS: Final = 16  # the token as written is ALL CAPS
_ENDS_CLAUSE: Final = 32  # the token ends with , . ; : ! or ?
_BUT: Final = 64
_PHRASE_START: Final = 128  # domain: the first word of a phrase (PHRASES)
_NEGATES: Final = 256  # domain: a negator, before or after the verb
_CLAUSE_WORD: Final = 512  # domain: a contrastive word that starts a clause ("but", "aber", ...)


@final
class Token:
    """VADER's word for a token as written, its lexicon valence (0.0 if none) and what the rules
    read of it (`flags`). Worked out once per distinct token and kept (`_TOKEN_CACHES`): natural
    text repeats its words (Zipf), and the rules' questions (in the lexicon? a rule word nearby?
    ALL CAPS? "n't"? a clause end?) were a pass over the text's words each, ~8 in all."""

    def __init__(self, word: str, valence: float, flags: int) -> None:
        self.word = word
        self.valence = valence
        self.flags = flags


# Tokens seen, per profile (plain VADER, domain rules): bounded, emptied when full.
_TOKEN_CACHES: Final[dict[bool, dict[str, Token]]] = {False: {}, True: {}}
_TOKEN_CACHE_MAX: Final = 50_000
_TOKEN_CACHE_TEXT_MAX: Final = 32


def _flags_of(tokens: list[Token]) -> int:
    present = 0
    for t in tokens:
        present |= t.flags
    return present


class SentimentScorer:
    """VADER's compound score in [-1, 1] and its label, ~5-10x faster than the reference.

    `domain=True` (the processor's default) adds what VADER lacks for feedback on assistant
    answers (`sentiment_domain`): domain words and phrases, a few words of five more languages,
    negation after the verb, sarcasm and requests. `domain=False` returns exactly VADER's score.
    """

    def __init__(self, max_chars: int | None = None, domain: bool = False) -> None:
        self.max_chars = max_chars  # longer texts are cut to their head and tail (see `clip`)
        self.domain = domain
        self.lexicon = _DOMAIN_LEXICON if domain else _LEXICON
        self._negate = _DOMAIN_NEGATE if domain else _NEGATE
        self._rule_words = _DOMAIN_RULE_WORDS if domain else _RULE_WORDS
        self._emoji = _DOMAIN_EMOJI if domain else _EMOJI
        self._emoji_chars = _DOMAIN_EMOJI_CHARS if domain else _EMOJI_CHARS
        self._tokens = _TOKEN_CACHES[domain]

    def score(self, text: str) -> tuple[float, str]:
        compound = self.compound(text)
        return compound, label_for(compound)

    def compound(self, text: str) -> float:
        if self.max_chars is not None and len(text) > self.max_chars:
            text = clip(text, self.max_chars)
        sarcasm_emoji = False
        if not text.isascii():
            # The few non-ASCII characters (one C-level regex pass), then the emoji among them.
            found = self._emoji_chars.intersection(_NON_ASCII.findall(text))
            if found:
                sarcasm_emoji = self.domain and SARCASM_EMOJI in found
                for emoji in found:
                    text = text.replace(emoji, self._emoji[emoji])
        raw = text.split()
        if not raw:
            return 0.0
        tokens = self._tokens_of(raw)
        present = _flags_of(tokens)  # which kinds of word the text has, in one pass
        lower: list[str] | None = None  # the words themselves, built only for the rules that read them
        clause: list[int] | None = None
        if self.domain:
            if present & _PHRASE_START:
                lower = [t.word for t in tokens]
                raw, joined = _join_phrases(raw, lower, tokens)
                if joined is not lower:
                    lower = joined
                    tokens = self._tokens_of(raw)
                    present = _flags_of(tokens)
            # Clause bounds matter only where something negates.
            if present & (_RAW_NT | _NEGATES) or tokens[0].word in OPENING_NEGATORS:
                clause = _clause_starts(tokens)
        hits: list[int] = []
        caps = False  # an ALL-CAPS lexicon word
        for i, t in enumerate(tokens):
            if t.flags & _IN_LEXICON:
                hits.append(i)
                if t.flags & _ALL_CAPS:
                    caps = True
        if not hits:
            return 0.0  # most tool/log-like texts: no sentiment word at all
        n = len(raw)

        # The lexicon words a rule may change: those with a rule word (see _RULE_WORDS) within
        # three tokens before or two after them, or a word with "n't" within three before them.
        # The others (most) take their lexicon valence as is, unless ALL CAPS.
        near: set[int] = set()
        if present & _RULE_WORD:  # about half the texts: no rule word at all
            for p, t in enumerate(tokens):
                if t.flags & _RULE_WORD:
                    near.update(range(p - 2, p + 4))
        if present & _HAS_NT:
            for p, t in enumerate(tokens):
                if t.flags & _HAS_NT:
                    near.update(range(p + 1, p + 4))
        if not near and not caps:
            # No rule can apply to any lexicon word (most texts): their lexicon valences as is
            # (none is 0: such words are not in the lexicons).
            valences = {i: tokens[i].valence for i in hits}
        else:
            if lower is None:
                lower = [t.word for t in tokens]
            valences = self._rule_valences(hits, near, raw, lower, n, clause)
        # The domain rules need an opening word they know (or a rolling-eyes emoji); most texts
        # have none, and skip the call.
        if (
            self.domain
            and valences
            and (
                tokens[0].word in _OPENING_RULE_WORDS
                or sarcasm_emoji
                or (n > 1 and tokens[1].word in SARCASM_OPENERS)
            )
        ):
            _domain_rules(
                valences, [t.word for t in tokens] if lower is None else lower, clause, sarcasm_emoji
            )
        if not valences:
            return 0.0

        if present & _BUT:
            total = _but_check(valences, n, next(i for i, t in enumerate(tokens) if t.word == "but"))
        else:
            total = float(sum(valences.values()))
        if total:
            # (`in` first: a memchr, where `count` walks the text; most texts have neither.)
            ep = min(text.count("!"), 4) * 0.292 if "!" in text else 0.0
            qm_count = text.count("?") if "?" in text else 0
            qm = 0.0
            if qm_count > 1:
                qm = qm_count * 0.18 if qm_count <= 3 else 0.96
            total = total + ep + qm if total > 0 else total - ep - qm
        return _NORMALISED.get(total) or _normalise(total)  # (the call only for a new sum)

    def _tokens_of(self, raw: list[str]) -> list[Token]:
        """What the rules read of each token: from the cache, or worked out for a token not seen
        before (names, numbers, ids)."""
        cache = self._tokens
        tokens: list[Token] = []
        for text in raw:
            token = cache.get(text)
            if token is None:
                token = self._token(text)
                if len(text) <= _TOKEN_CACHE_TEXT_MAX:  # words, not 50 KB runs of one character
                    if len(cache) >= _TOKEN_CACHE_MAX:
                        cache.clear()
                    cache[text] = token
            tokens.append(token)
        return tokens

    def _token(self, text: str) -> Token:
        word = _vader_word(text)
        flags = 0
        if self.domain:
            if "\u2019" in word:  # typographic apostrophes: "didn\u2019t" is "didn't"
                word = word.replace("\u2019", "'")
            if word in PHRASE_FIRST_WORDS:
                flags |= _PHRASE_START
            if word in _NEGATING:
                flags |= _NEGATES
            if word in _CLAUSE_WORDS:
                flags |= _CLAUSE_WORD
        valence = self.lexicon.get(word)
        if valence is not None:
            flags |= _IN_LEXICON
        if word in self._rule_words:
            flags |= _RULE_WORD
        if "n't" in word:
            flags |= _HAS_NT
        if "n't" in text:
            flags |= _RAW_NT
        if text.isupper():
            flags |= _ALL_CAPS
        if text[-1] in _CLAUSE_END:
            flags |= _ENDS_CLAUSE
        if word == "but":
            flags |= _BUT
        return Token(word, 0.0 if valence is None else valence, flags)

    def _rule_valences(
        self,
        hits: list[int],
        near: set[int],
        raw: list[str],
        lower: list[str],
        n: int,
        clause: list[int] | None,
    ) -> dict[int, float]:
        """Sparse valences of the lexicon words (boosters get none), running VADER's rules for
        the words a rule may change (near a rule word, or ALL CAPS)."""
        lexicon = self.lexicon
        is_cap_diff: bool | None = None  # counted only for a word that may need it
        valences: dict[int, float] = {}
        for i in hits:
            if i in near or raw[i].isupper():
                lw = lower[i]
                if lw in _BOOSTERS:
                    continue
                if lw == "kind" and i < n - 1 and lower[i + 1] == "of":
                    continue
                if is_cap_diff is None:
                    is_cap_diff = 0 < n - sum(map(str.isupper, raw)) < n
                v = self._valence(i, raw, lower, n, is_cap_diff, clause)
            else:
                v = lexicon[lower[i]]  # no rule can apply
            if v:
                valences[i] = v
        return valences

    def _valence(
        self, i: int, raw: list[str], lower: list[str], n: int, is_cap_diff: bool, clause: list[int] | None
    ) -> float:
        lexicon = self.lexicon
        # Domain mode: negation does not reach across a clause ("Not perfect, but good").
        first = clause[bisect_right(clause, i) - 1] if clause is not None else 0
        lw = lower[i]
        base = lexicon[lw]
        valence = base
        if lw == "no" and i != n - 1 and lower[i + 1] in lexicon:
            valence = 0.0  # "no" negates the next lexicon word instead of scoring itself
        if (
            (i > 0 and lower[i - 1] == "no")
            or (i > 1 and lower[i - 2] == "no")
            or (i > 2 and lower[i - 3] == "no" and lower[i - 1] in ("or", "nor"))
        ):
            valence = base * _N_SCALAR
        if is_cap_diff and raw[i].isupper():
            valence = valence + _C_INCR if valence > 0 else valence - _C_INCR

        for start_i in range(3):
            j = i - (start_i + 1)
            if j < 0 or lower[j] in lexicon:
                continue
            # booster / dampener
            prev_lower = lower[j]
            if prev_lower in _BOOSTERS:
                s = _BOOSTERS[prev_lower]
                if valence < 0:
                    s = -s
                if is_cap_diff and raw[j].isupper():
                    s = s + _C_INCR if valence > 0 else s - _C_INCR
                if start_i == 1:
                    s *= 0.95
                elif start_i == 2:
                    s *= 0.9
                valence += s
            # negation
            if j < first:
                continue
            if start_i == 0:
                if _negated(lower[i - 1], self._negate):
                    valence *= _N_SCALAR
            elif start_i == 1:
                if lower[i - 2] == "never" and lower[i - 1] in ("so", "this"):
                    valence *= 1.25
                elif lower[i - 2] == "without" and lower[i - 1] == "doubt":
                    pass
                elif _negated(lower[i - 2], self._negate):
                    valence *= _N_SCALAR
            else:
                if (lower[i - 3] == "never" and lower[i - 2] in ("so", "this")) or lower[i - 1] in (
                    "so",
                    "this",
                ):
                    valence *= 1.25
                elif lower[i - 3] == "without" and (lower[i - 2] == "doubt" or lower[i - 1] == "doubt"):
                    pass
                elif _negated(lower[i - 3], self._negate):
                    valence *= _N_SCALAR
                valence = _idioms(valence, lower, i, n)

        # German/Dutch negate after the verb ("funktioniert nicht", "werkt niet"); French closes
        # "ne ... pas" after it.
        if (
            clause is not None  # computed when the text has a negator at all
            and valence > 0
            and not POST_NEGATORS.isdisjoint(lower[i + 1 : i + 3])
            and _negate_free(lower[first:i], self._negate)  # "ne marche pas" is negated once
        ):
            valence *= _N_SCALAR
        # "least" as negation, unless "at least" / "very least"
        if i > 1 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
            if lower[i - 2] != "at" and lower[i - 2] != "very":
                valence *= _N_SCALAR
        elif i > 0 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
            valence *= _N_SCALAR
        return valence


def _vader_word(token: str) -> str:
    """VADER strips surrounding punctuation unless that leaves <= 2 chars (emoticons like ":)")."""
    stripped = token.strip(_PUNCT)
    return (stripped if len(stripped) > 2 else token).lower()


# VADER's normalisation, clamped and rounded to 4 decimals, per summed score. `round(x, 4)` goes
# through a decimal conversion (~0.2 µs, ~0.8 with the rest here), and sums recur (texts share
# their few lexicon words), so the result is kept per sum: a dict lookup instead. Bounded.
_NORMALISED: Final[dict[float, float]] = {}
_NORMALISED_MAX: Final = 20_000


def _normalise(total: float) -> float:
    norm = _NORMALISED.get(total)
    if norm is None:
        if len(_NORMALISED) > _NORMALISED_MAX:
            _NORMALISED.clear()
        norm = _NORMALISED[total] = round(max(-1.0, min(1.0, total / math.sqrt(total * total + 15))), 4)
    return norm


def _join_phrases(raw: list[str], lower: list[str], tokens: list[Token]) -> tuple[list[str], list[str]]:
    """Domain phrases ("made up", "spot on", "thanks for nothing") become one token each. Only
    the positions of a phrase's first word are looked at; the lists are rebuilt only on a match.
    A joined token is the phrase (lower case: never ALL CAPS) with the punctuation that ends the
    phrase (which may end a clause)."""
    matches: list[tuple[int, int, str]] = []
    last_end = 0
    n = len(lower)
    for i, t in enumerate(tokens):
        if not t.flags & _PHRASE_START or i < last_end or i + 1 == n:
            continue
        # VADER keeps the punctuation of short words ("on,"): compare without it.
        candidates = _PHRASES_BY_START[lower[i]].get(lower[i + 1].strip(_PUNCT))
        if candidates is None:
            continue
        for rest, token in candidates:
            k = len(rest) + 2
            if not rest or (
                n - i >= k and all(lower[i + 2 + m].strip(_PUNCT) == w for m, w in enumerate(rest))
            ):
                matches.append((i, k, token))
                last_end = i + k
                break
    if not matches:
        return raw, lower
    out_raw: list[str] = []
    out_lower: list[str] = []
    pos = 0
    for i, k, token in matches:
        out_raw += raw[pos:i]
        out_lower += lower[pos:i]
        last = raw[i + k - 1]
        out_raw.append(token + last[len(last.rstrip(_PUNCT)) :])
        out_lower.append(token)
        pos = i + k
    out_raw += raw[pos:]
    out_lower += lower[pos:]
    return out_raw, out_lower


def _clause_starts(tokens: list[Token]) -> list[int]:
    """Sorted indexes where a clause starts: 0, after a token ending with punctuation, and at a
    contrastive word ("but", "aber", ...)."""
    starts = [0]
    contrast = False
    for i, t in enumerate(tokens):
        if t.flags & _ENDS_CLAUSE:
            starts.append(i + 1)
        if t.flags & _CLAUSE_WORD:
            contrast = True
    if contrast:
        starts = sorted({*starts, *(i for i, t in enumerate(tokens) if t.flags & _CLAUSE_WORD)})
    return starts


def _negate_free(tokens: list[str], negate: frozenset[str]) -> bool:
    return not any(_negated(t, negate) for t in tokens)


def _domain_rules(
    valences: dict[int, float], lower: list[str], clause: list[int] | None, sarcasm_emoji: bool
) -> None:
    """Opening negators, sarcasm and requests, on the per-word valences (in place)."""
    if lower[0] in OPENING_NEGATORS and clause is not None:
        first_clause_end = clause[1] if len(clause) > 1 else len(lower)
        for i in [i for i, v in valences.items() if v > 0 and i < first_clause_end]:
            valences[i] *= _N_SCALAR
    if min(valences.values()) <= -1.0:
        # Praise in the opening words (or a rolling-eyes emoji) with something bad later: the
        # praise is sarcastic and counts against the answer.
        opener = lower[0] in SARCASM_OPENERS or (len(lower) > 1 and lower[1] in SARCASM_OPENERS)
        if opener or sarcasm_emoji:
            first_bad = next(i for i, v in valences.items() if v <= -1.0)
            for i in [i for i, v in valences.items() if v > 0 and i < first_bad and i <= 2]:
                valences[i] = -abs(valences[i]) * 0.5
    elif sarcasm_emoji:
        for i in list(valences):
            valences[i] = -abs(valences[i])
    if lower and lower[0] in REQUEST_STARTERS and all(abs(v) < REQUEST_STRONG for v in valences.values()):
        valences.clear()  # a request, not a judgement


def _but_check(valences: dict[int, float], n: int, bi: int) -> float:
    """Contrastive "but": words before it x0.5, after it x1.5. Replays vaderSentiment's loop as is,
    including its `list.index(value)` lookup, which rescales the *first* word with an equal value
    (so a halved -2.8 that became -1.4 is halved again instead of a later -1.4). Keeping the quirk
    keeps scores identical to the reference; it only runs for texts containing "but"."""
    dense = [0.0] * n
    for i, v in valences.items():
        dense[i] = v
    # VADER walks every position; only the lexicon words' ones (the keys, in increasing order)
    # have a value, and a step rescales a position at or before its own, so the value each step
    # reads is the word's own, as in VADER's loop.
    for v in valences.values():
        if not v:
            continue  # zeros never change
        si = dense.index(v)
        if si < bi:
            dense[si] = v * 0.5
        elif si > bi:
            dense[si] = v * 1.5
    return float(sum(dense))


def _idioms(valence: float, lower: list[str], i: int, n: int) -> float:
    """VADER's _special_idioms_check (called with i >= 3), skipped when no idiom word is near."""
    if _IDIOM_MARKERS.isdisjoint(lower[i - 3 : i + 3]):
        return valence
    w3, w2, w1, w0 = lower[i - 3], lower[i - 2], lower[i - 1], lower[i]
    for seq in (f"{w1} {w0}", f"{w2} {w1} {w0}", f"{w2} {w1}", f"{w3} {w2} {w1}", f"{w3} {w2}"):
        if seq in _SPECIAL_CASES:
            valence = _SPECIAL_CASES[seq]
            break
    if n - 1 > i:
        seq = f"{w0} {lower[i + 1]}"
        if seq in _SPECIAL_CASES:
            valence = _SPECIAL_CASES[seq]
    if n - 1 > i + 1:
        seq = f"{w0} {lower[i + 1]} {lower[i + 2]}"
        if seq in _SPECIAL_CASES:
            valence = _SPECIAL_CASES[seq]
    for seq in (f"{w3} {w2} {w1}", f"{w3} {w2}", f"{w2} {w1}"):
        if seq in _BOOSTERS:
            valence = valence + _BOOSTERS[seq]
    return valence


def clip(text: str, max_chars: int) -> str:
    """Head and tail of a long text, cut at whitespace. The opening and the closing of a message
    carry most of its tone ("Thanks so much! ... This is still broken."); scoring a 20 KB answer
    whole would cost milliseconds and saturate VADER's compound at +-1 anyway."""
    if len(text) <= max_chars:
        return text
    half = max_chars // 2
    head = text[:half]
    tail = text[-half:]
    cut = head.rfind(" ")
    if cut > half // 2:
        head = head[:cut]
    cut = tail.find(" ")
    if 0 <= cut < half // 2:
        tail = tail[cut + 1 :]
    return head + " ... " + tail


def head(text: str, max_chars: int) -> str:
    """The first `max_chars` characters, cut at whitespace."""
    if len(text) <= max_chars:
        return text
    cut = text.rfind(" ", 0, max_chars)
    return text[: cut if cut > max_chars // 2 else max_chars]


# --- processor ------------------------------------------------------------------------------


class SentimentProcessor:
    """Processor "sentiment": sets prompt_sentiment(_label) and response_sentiment(_label) on
    inference rows. Runs after "pii" in the default chain, so it scores masked text."""

    name = "sentiment"

    def __init__(self, config: SentimentConfig | None = None, scorer: SentimentScorer | None = None) -> None:
        self.config = config or SentimentConfig()
        self.scorer = scorer or SentimentScorer(
            max_chars=self.config.max_chars, domain=self.config.domain_rules
        )
        self._prompt = "prompt" in self.config.fields
        self._response = "response" in self.config.fields
        self._head = self.config.response_head_chars
        self._clip = self.config.prompt_chars
        # Distinct texts are scored once per batch: a conversation's last user message and
        # canned answers recur across rows.
        self._memo: dict[str, tuple[float, str]] = {}

    def process(self, batch: Batch) -> None:
        if not self.config.enabled:
            return
        self._memo = {}
        try:
            for row in batch.inferences:
                try:
                    self._process_row(row)
                except Exception:
                    log.warning("sentiment: could not score a row", exc_info=True)
                    _set(row, "prompt", None)
                    _set(row, "response", None)
        finally:
            self._memo = {}

    def _score(self, text: str) -> tuple[float, str]:
        """Scores a text not in the memo yet (the caller looked) and keeps its result there."""
        compound = self.scorer.compound(text)
        hit = self._memo[text] = (compound, label_for(compound))
        return hit

    def _process_row(self, row: Row) -> None:
        # The columns are set here rather than through `_set`, and the memo is read inline: this
        # runs for every inference row, and the calls were a fifth of the stage's own overhead.
        prompt = last_user_text(row.get("prompt_messages")) if self._prompt else None
        if prompt:
            if len(prompt) > self._clip:
                prompt = clip(prompt, self._clip)
            row["prompt_sentiment"], row["prompt_sentiment_label"] = self._memo.get(prompt) or self._score(
                prompt
            )
        else:
            row["prompt_sentiment"] = None
            row["prompt_sentiment_label"] = ""
        response = assistant_text(row.get("response_messages")) if self._response else None
        if response:
            # The opening of an answer carries its tone ("Sorry, I can't ..."); the rest is content.
            response = head(response, self._head) if self._head else clip(response, self._clip)
            row["response_sentiment"], row["response_sentiment_label"] = self._memo.get(
                response
            ) or self._score(response)
        else:
            row["response_sentiment"] = None
            row["response_sentiment_label"] = ""


def _set(row: Row, prefix: str, result: tuple[float, str] | None) -> None:
    score, label = f"{prefix}_sentiment", f"{prefix}_sentiment_label"
    if result is None:
        row[score] = None
        row[label] = ""
    else:
        row[score], row[label] = result


def message_text(content: Any) -> str:
    """Text of a message's content: a string, or the text parts of a list of parts (OpenAI
    `{"type": "text", "text": ...}` or OTel GenAI `{"type": "text", "content": ...}`)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text":
                t = part.get("text", part.get("content"))
                if isinstance(t, str):
                    texts.append(t)
        return "\n".join(texts)
    return ""


def last_user_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content", msg.get("parts"))
            return content if isinstance(content, str) else message_text(content)
    return ""


def assistant_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    if len(messages) == 1:  # most responses: one choice, one message
        msg = messages[0]
        if isinstance(msg, dict) and msg.get("role", "assistant") == "assistant":
            content = msg.get("content", msg.get("parts"))
            return content if isinstance(content, str) else message_text(content)
        return ""
    texts = [
        message_text(msg.get("content", msg.get("parts")))
        for msg in messages
        if isinstance(msg, dict) and msg.get("role", "assistant") == "assistant"
    ]
    return "\n".join(t for t in texts if t)
