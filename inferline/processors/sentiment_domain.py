"""What VADER lacks for comments about assistant answers: domain words, phrases, a few words of
German, French, Spanish, Italian and Dutch, negation after the verb, sarcasm and requests.

Fitted on `tests/data/sentiment_tune.tsv` only; `tests/data/sentiment_heldout.tsv` measures it.
Valences are on VADER's scale (-4 .. +4).
"""

from __future__ import annotations

from typing import Final


def words(text: str) -> list[str]:
    """A word list written as one block of text (long lists stay readable)."""
    return text.split()


# Words VADER does not know, or knows with a sense that misleads on feedback about answers.
DOMAIN_WORDS: Final[dict[str, float]] = {
    # English, about answers
    "works": 1.5, "worked": 1.5, "working": 1.2, "fixed": 1.6, "correct": 1.9, "accurate": 1.9,
    "right": 1.2, "concise": 1.2, "tidy": 1.0, "cleaner": 1.5, "nailed": 2.8, "compiles": 1.0,
    "incorrect": -2.1, "inaccurate": -2.1, "hallucinated": -2.6, "hallucination": -2.6,
    "hallucinations": -2.6, "hallucinates": -2.6, "hallucinating": -2.6, "fabricated": -2.6,
    "invented": -1.8, "inventing": -1.8, "crashed": -2.2, "crashes": -2.2, "crash": -2.0,
    "outdated": -1.5, "deprecated": -1.2, "garbage": -2.5, "deleted": -1.2, "wiped": -1.6,
    "misses": -1.5, "nope": -1.2, "meh": -1.0, "worse": -2.1, "broke": -2.0, "breaking": -1.8,
    "ignored": -1.8, "lifesaver": 2.8, "impressive": 2.5, "nonsense": -2.2,
    # Not evaluations in a request ("please help me", "okay", "alright"): neutral here.
    "please": 0.0, "help": 0.0, "okay": 0.0, "ok": 0.0, "alright": 0.0, "sure": 0.0, "yeah": 0.0,
    "error": -0.3, "kind": 0.0, "like": 0.0, "top": 1.5, "confidently": 0.0, "again": -0.8,
    # German
    "danke": 1.9, "dank": 1.5, "toll": 2.2, "perfekt": 2.7, "hilfreich": 1.8, "funktioniert": 1.5,
    "klasse": 2.0, "falsch": -2.1, "schlecht": -2.1, "nutzlos": -2.0, "hilft": 1.2, "stimmt": 1.0,
    # French
    "merci": 1.9, "parfait": 2.7, "génial": 2.8, "nul": -2.0, "faux": -2.1, "inutile": -2.0,
    "marche": 1.2, "utile": 1.8,
    # Spanish
    "gracias": 1.9, "perfecto": 2.7, "perfectamente": 2.7, "genial": 2.8, "excelente": 3.0,
    "funciona": 1.5, "incorrecto": -2.1, "incorrecta": -2.1, "inútil": -2.0, "sirve": 1.0,
    "buena": 1.9, "bueno": 1.9,
    # Italian
    "grazie": 1.9, "perfetto": 2.7, "perfetta": 2.7, "ottimo": 2.8, "ottima": 2.8, "bravo": 2.0,
    "funziona": 1.5, "sbagliato": -2.1, "sbagliata": -2.1,
    # Dutch
    "bedankt": 1.9, "prima": 1.5, "geweldig": 2.8, "duidelijk": 1.2, "werkt": 1.5, "klopt": 1.0,
    "fout": -2.1, "nutteloos": -2.0, "slecht": -2.1,
}  # fmt: skip

# Multi-word expressions, matched on lower-cased, punctuation-stripped tokens and scored as one
# token. Longest first where they share a first word.
PHRASES: Final[dict[tuple[str, ...], float]] = {
    ("spot", "on"): 2.6,
    ("nailed", "it"): 2.8,
    ("like", "a", "charm"): 2.6,
    ("did", "the", "trick"): 2.2,
    ("saved", "me"): 2.0,
    ("thanks", "for", "nothing"): -2.8,
    ("yeah", "right"): -2.2,
    ("yeah", "sure"): -1.8,
    ("not", "even", "close"): -2.4,
    ("not", "even", "remotely"): -2.4,
    ("made", "up"): -2.4,
    ("make", "up"): -2.0,
    ("making", "up"): -2.4,
    ("making", "things", "up"): -2.4,
    ("made", "things", "up"): -2.4,
    ("didn't", "help"): -2.2,
    ("did", "not", "help"): -2.2,
    ("doesn't", "help"): -2.2,
    ("does", "not", "help"): -2.2,
    ("doesn't", "work"): -2.2,
    ("does", "not", "work"): -2.2,
    ("didn't", "work"): -2.2,
    ("won't", "work"): -2.0,
    ("not", "working"): -2.2,
    ("doesn't", "compile"): -2.2,
    ("won't", "start"): -2.2,
    ("doesn't", "exist"): -1.8,
    ("isn't", "real"): -1.8,
    ("can't", "complain"): 1.6,
    ("no", "complaints"): 1.6,
    ("no", "issues"): 1.4,
    ("not", "bad"): 1.5,
    ("couldn't", "be", "better"): 2.8,
    ("not", "what", "i", "asked"): -2.0,
    ("didn't", "answer"): -2.0,
    ("doesn't", "answer"): -2.0,
    ("sure", "because"): -2.2,
    ("no", "need"): 0.0,
    ("same", "mistake"): -2.0,
    ("off", "by"): -1.6,
    ("wrong", "again"): -2.6,
}
PHRASE_FIRST_WORDS: Final[frozenset[str]] = frozenset(p[0] for p in PHRASES)

# Negation written after the verb (German, Dutch) or closing a French "ne ... pas".
POST_NEGATORS: Final[frozenset[str]] = frozenset({"nicht", "niet", "pas", "nie", "nooit"})
# Negators before the word, besides VADER's English ones.
EXTRA_NEGATORS: Final[frozenset[str]] = frozenset(
    {"non", "ne", "n'est", "kein", "keine", "geen", "nunca", "mai", "jamais", "ni"}
)

# A comment that opens with praise and goes on with something bad is sarcasm:
# "Great, another wrong answer", "Perfect, now nothing works", "Nice job breaking the login".
SARCASM_OPENERS: Final[frozenset[str]] = frozenset(
    {"great", "perfect", "nice", "wonderful", "wow", "oh", "awesome", "fantastic", "brilliant",
     "sure", "yeah", "lovely", "amazing", "thanks", "excellent", "cool"}
)  # fmt: skip
SARCASM_EMOJI: Final = "\U0001f644"  # face with rolling eyes

# A clause opening with one of these denies what follows ("Nothing about this was useful").
OPENING_NEGATORS: Final[frozenset[str]] = frozenset(
    {"nothing", "none", "nobody", "nichts", "rien", "nada", "niente", "niets"}
)

# Emoji whose VADER description carries no or the wrong sentiment for feedback.
EMOJI_OVERRIDES: Final[dict[str, str]] = {
    "\U0001f44d": " good",  # thumbs up
    "\U0001f44e": " bad",  # thumbs down
    "\U0001f621": " angry",  # pouting face
    "\U0001f525": " great",  # fire
    "\U0001f64f": " thanks",  # folded hands
    "\U0001f494": " sad",  # broken heart
    "\U0001f926": " ugh",  # face palm
    SARCASM_EMOJI: " ugh",
}

# A comment starting with one of these asks for something; unless it also judges the answer
# strongly, it is neutral ("Please help me ...", "Can you make it more concise?").
REQUEST_STARTERS: Final[frozenset[str]] = frozenset(
    words(
        """
    can could would will please rewrite translate explain add use make give show summarise summarize
    convert try split list return format merge check do draft write continue go now same only
    kannst könntest bitte schreib erkläre übersetze peux pouvez traduis résume explique écris
    puedes podrías hazlo escríbelo traduce resume puoi potresti traducilo riscrivi scrivi kun
    kunt wil schrijf vertaal what which how where is are why when who
    """
    )
)
# Valence magnitude from which a word in a request still counts ("Can you fix this useless
# answer?" is negative).
REQUEST_STRONG: Final = 2.0
