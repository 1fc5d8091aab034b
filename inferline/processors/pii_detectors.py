"""Built-in PII detectors: one `Rule` per shape, each an (anchor, exact regex, validator) triple.

How a rule is used (see `inferline.processors.pii` for the engine):

* `anchors` are short Hyperscan patterns matching a *prefix* of what `exact` matches (without its
  lookarounds). Hyperscan scans the whole text once for all anchors of all rules and reports, with
  HS_FLAG_SOM_LEFTMOST, the leftmost start of each anchor hit. Anchors are kept short so each
  candidate is reported once or twice: every report costs a Python callback (~0.3 µs).
* `exact` is a Python `re` pattern (ASCII semantics) tried with `.match(text, start)` at each
  reported start. Lookbehinds see the text before `start`, so boundaries are exact.
* `check` validates the match (Luhn, mod-97, SSN ranges, digit counts, ...) and returns the span to
  mask, or None. Validation only ever runs on candidates, never on the whole text.
* `left` (numeric rules) is the class of characters that may not precede a match, the same as
  the exact regex's lookbehind. The engine prefixes each anchor with `(?:^|[^left])`, so dates,
  versions and UUID groups (`2025-08-20`, `v1.2.3`) are rejected inside Hyperscan instead of
  costing a callback and a regex call each.
* `literals` are plain substrings one of which must occur for the rule to fire; the pure-Python
  fallback engine (no Hyperscan) uses them to skip rules cheaply.

ASCII semantics everywhere (re.ASCII, Hyperscan without UCP): non-ASCII letters count as
boundaries, so `メールはjane@example.comです` masks exactly the address. Full-width digits are not
detected.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

from inferline.processors import pii_names

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Rule:
    pii_type: str
    anchors: tuple[bytes, ...]
    exact: re.Pattern[str]
    check: Callable[[re.Match[str]], Span | None]
    literals: tuple[str, ...] = ()  # fallback prefilter: one of these must occur
    needs_digit: bool = False  # fallback prefilter: the text must contain a digit
    # For anchors that would be costly with start-of-match tracking (a broad leading class, as in
    # an email's local part: ~20 µs per 2 KB with SOM vs ~0.3 µs without), the anchor is compiled
    # without SOM and this finds the start from the anchor's end offset instead.
    locate: Callable[[str, int], int | None] | None = None
    # Regex class body of characters that may not precede a match; every possible first character
    # of the anchors must be in it, so that a reported start at 0 is unambiguous.
    left: str | None = None
    # Words matched by a second, literal-only Hyperscan database (the names gazetteer): thousands
    # of literals compile in ~0.25 s there, and in minutes as regexes. Reports go through `locate`.
    gazetteer: tuple[str, ...] = ()


_ANY_DIGIT = re.compile(r"\d", re.ASCII).search
_ANY_ALPHA = re.compile(r"[A-Za-z]").search
# The local part read backwards from the '@': reversing <= 64 chars and one anchored match is
# cheaper than a Python loop over characters.
_LOCAL_REVERSED = re.compile(r"[A-Za-z0-9._%+\-]*")


def _email_start(text: str, end: int) -> int | None:
    at = end - 2  # the anchor is "@" plus one domain character
    lo = at - 64 if at > 64 else 0
    run = _LOCAL_REVERSED.match(text[lo:at][::-1])
    assert run is not None  # `*` always matches
    i = at - run.end()
    while i < at and text[i] in "._%+-":  # a local part starts with a letter or digit
        i += 1
    return i if i < at else None


def _whole(m: re.Match[str]) -> Span | None:
    return m.span()


def _group1(m: re.Match[str]) -> Span | None:
    return m.span(1)


# --- validators -------------------------------------------------------------------------------


_DOUBLED = {str(d): (2 * d if d < 5 else 2 * d - 9) for d in range(10)}
_DEL_CARD_SEPS = str.maketrans("", "", " -")
_DEL_PHONE_SEPS = str.maketrans("", "", " .-()/+")


def luhn_ok(digits: str) -> bool:
    # map() keeps the per-digit work in C: this runs for every card-shaped candidate.
    return (sum(map(int, digits[-1::-2])) + sum(map(_DOUBLED.__getitem__, digits[-2::-2]))) % 10 == 0


def _after_digit_group(m: re.Match[str]) -> bool:
    """The match continues a space-separated run of digit groups ("DE89 3704 0044 0532 0130 01"),
    so it is a slice of some longer number, not a number of its own."""
    s = m.start()
    t = m.string
    return s >= 2 and t[s - 1] == " " and t[s - 2].isdigit()


def _check_card(m: re.Match[str]) -> Span | None:
    if _after_digit_group(m):
        return None
    digits = m.group().translate(_DEL_CARD_SEPS)
    return m.span() if luhn_ok(digits) else None


def _check_phone(m: re.Match[str]) -> Span | None:
    raw = m.group()
    if raw[0] != "+" and _after_digit_group(m):
        return None
    n = len(raw.translate(_DEL_PHONE_SEPS))  # the match holds only digits and these separators
    first = raw[0]
    if first == "+":
        ok = 8 <= n <= 15  # E.164: at most 15 digits including the country code
    elif first == "(":
        ok = 9 <= n <= 12
    elif first == "0":
        ok = 9 <= n <= 12  # trunk-prefixed national numbers; 8 digits is too date-like (01.02.2025)
    else:
        ok = n == 10 or (n == 9 and len(raw) == 11)  # NANP 3-3-4; Spanish/Portuguese 3-3-3
    return m.span() if ok else None


def _check_ssn(m: re.Match[str]) -> Span | None:
    # Area/group/serial rules are in the regex itself.
    return None if _after_digit_group(m) else m.span()


# IBAN lengths by country (ISO 13616 registry); unknown countries fall back to checksum-only.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


# Letters to their mod-97 numbers (A=10 ... Z=35) in one str.translate call.
_IBAN_DIGITS = str.maketrans({chr(c): str(c - 55) for c in range(ord("A"), ord("Z") + 1)})


def iban_ok(compact: str) -> bool:
    return int((compact[4:] + compact[:4]).translate(_IBAN_DIGITS)) % 97 == 1


def _check_iban(m: re.Match[str]) -> Span | None:
    raw = m.group()
    start = m.start()
    compact = raw.replace(" ", "")
    want = IBAN_LENGTHS.get(raw[:2])
    if want is not None:
        if len(compact) < want:
            return None
        end = len(raw)
        if len(compact) > want:
            # The regex is greedy and may have eaten a following word or number: cut after
            # `want` characters, which must fall on a group boundary.
            seen = 0
            for end, c in enumerate(raw, 1):  # noqa: B007 - `end` is used after the loop
                if c != " ":
                    seen += 1
                    if seen == want:
                        break
            if end < len(raw) and raw[end] != " ":
                return None
            compact = compact[:want]
        return (start, start + end) if iban_ok(compact) else None
    # Unknown country: checksum the whole match, then without trailing groups.
    end = len(raw)
    while end > 0:
        compact = raw[:end].replace(" ", "")
        if len(compact) < 15:
            return None
        if len(compact) <= 34 and iban_ok(compact):
            return start, start + end
        end = raw.rfind(" ", 0, end)
    return None


def _check_ipv6(m: re.Match[str]) -> Span | None:
    raw = m.group()
    if "::" not in raw and raw.count(":") != 7:
        return None  # cheap reject before ipaddress: times (10:05:00), MACs (6 groups)
    if sum(1 for g in raw.split(":") if g) < 2:
        return None  # "::", "::1", "foo :: Int" are not worth masking and mostly not addresses
    try:
        ipaddress.IPv6Address(raw)
    except ValueError:
        return None
    return m.span()


def _check_secret_sk(m: re.Match[str]) -> Span | None:
    body = m.group()[3:]
    # Real keys are random base62: they have digits and letters; kebab-case words do not.
    if _ANY_DIGIT(body) and _ANY_ALPHA(body):
        return m.span()
    return None


def _check_bearer(m: re.Match[str]) -> Span | None:
    token = m.group(1)
    # "Bearer authentication" is prose; a real token has a digit or is long.
    if len(token) >= 24 or _ANY_DIGIT(token):
        return m.span(1)
    return None


_IMAGE_TLDS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp"})


def _check_email(m: re.Match[str]) -> Span | None:
    if m.group().rpartition(".")[2].lower() in _IMAGE_TLDS:  # "logo@2x.png"
        return None
    return m.span()


# --- rules --------------------------------------------------------------------------------------

_A = re.ASCII
_X = re.ASCII | re.VERBOSE
# Left context shared by the numeric detectors: not inside a word or a dotted/dashed number
# (dates, versions, UUIDs), not after a '+', a path separator or a '#' (ticket numbers).
_NUM_LEFT_CLASS = r"\w+.\-/#"
_NUM_LEFT = rf"(?<![{_NUM_LEFT_CLASS}])"
_NUM_RIGHT = r"(?![\w\-/]|[.,:]\d)"

EMAIL = Rule(
    "EMAIL",
    (rb"@[A-Za-z0-9]",),
    re.compile(
        r"(?<!\w)[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@"
        r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w\-]|\.[A-Za-z0-9])",
        _A,
    ),
    _check_email,
    ("@",),
    locate=_email_start,
)

_PHONE_RE = re.compile(
    _NUM_LEFT
    + r"""(?:
            \+[1-9]\d{0,2}(?:[ .\-]?\(?\d{1,5}\)?){1,6}              # +1 415 555 0132, +49 30 123456
          | \(0?[1-9]\d{1,4}\)[ .\-]?\d{2,5}(?:[ .\-]?\d{2,5}){0,3}    # (415) 555-0132
          | 0[1-9]\d{0,4}(?:[ .\-/]\d{2,8}){1,4}                      # 020 7946 0958, 06 12 34 56 78
          | [2-9]\d{2}([.\- ])\d{3}\1\d{4}                             # 415-555-0132
          | [6-9]\d{2}[ ]\d{3}[ ]\d{3}                                  # ES/PT mobile 612 345 678
        )"""
    + _NUM_RIGHT,
    _X,
)
PHONE = Rule(
    "PHONE",
    (
        rb"\+[1-9][0-9]{0,2}[ .\-]?\(?[0-9]",
        rb"0[1-9][0-9]{0,4}[ .\-/][0-9]{2}",
        rb"[2-9][0-9]{2}[.\- ][0-9]{3}[.\- ][0-9]",
        rb"[6-9][0-9]{2} [0-9]{3} [0-9]{3}",
    ),
    _PHONE_RE,
    _check_phone,
    needs_digit=True,
    left=_NUM_LEFT_CLASS,
)
# "(415) 555-0132": '(' may follow anything, so this anchor gets no left-context prefix.
PHONE_PAREN = Rule(
    "PHONE",
    (rb"\(0?[1-9][0-9]{1,4}\)[ .\-]?[0-9]",),
    _PHONE_RE,
    _check_phone,
    needs_digit=True,
)

CREDIT_CARD = Rule(
    "CREDIT_CARD",
    (rb"[2-6][0-9]{3}[ \-]?[0-9]{4}[ \-]?[0-9]{4}", rb"3[0-9]{3}[ \-]?[0-9]{6}[ \-]?[0-9]{4}"),
    # The usual written forms only, with one consistent separator: groups of four (16 or 19
    # digits), Amex/Diners 4-6-5 / 4-6-4, or 13-19 contiguous digits. Not a prefix of a longer number.
    re.compile(
        _NUM_LEFT
        + r"""(?:
            [2-6]\d{3}([ \-]?)\d{4}\1\d{4}\1\d{4}(?:\1\d{3})?
          | 3\d{3}([ \-]?)\d{6}\2\d{4,5}
          | [2-6]\d{12,18}
        )"""
        + _NUM_RIGHT,
        _X,
    ),
    _check_card,
    needs_digit=True,
    left=_NUM_LEFT_CLASS,
)

US_SSN = Rule(
    "US_SSN",
    (rb"[0-8][0-9]{2}[\- ][0-9]{2}[\- ][0-9]{4}",),
    # Area 000, 666 and 900-999, group 00 and serial 0000 are never issued.
    re.compile(
        _NUM_LEFT + r"(?!000|666|9)\d{3}([\- ])(?!00)\d{2}\1(?!0000)\d{4}" + _NUM_RIGHT,
        _A,
    ),
    _check_ssn,
    needs_digit=True,
    left=_NUM_LEFT_CLASS,
)

IBAN = Rule(
    "IBAN",
    (rb"\b[A-Z]{2}[0-9]{2} ?[A-Z0-9]{4}",),
    re.compile(r"(?<!\w)[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,32}(?![A-Za-z0-9])", _A),
    _check_iban,
    needs_digit=True,
)

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = Rule(
    "IP_ADDRESS",
    (rb"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]",),
    re.compile(r"(?<![\w.\-])" + rf"(?:{_OCTET}\.){{3}}{_OCTET}" + r"(?![\w\-]|\.\d)", _A),
    _whole,
    needs_digit=True,
    left=r"\w.\-",
)

IPV6 = Rule(
    "IP_ADDRESS",
    (rb"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:",),
    re.compile(
        r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?"
        r"(?![\w:]|\.\d)",
        _A,
    ),
    _check_ipv6,
    ("::", ":"),
    left=r"\w:.",
)

SECRET_RULES: tuple[Rule, ...] = (
    # OpenAI (sk-..., sk-proj-..., sk-svcacct-...) and Anthropic (sk-ant-api03-...) keys.
    Rule(
        "SECRET",
        (rb"sk-[A-Za-z0-9_\-]{20}",),
        re.compile(r"(?<![\w\-])sk-[A-Za-z0-9_\-]{20,}", _A),
        _check_secret_sk,
        ("sk-",),
    ),
    Rule(
        "SECRET",
        (rb"(?:AKIA|ASIA)[A-Z0-9]{16}",),
        re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])", _A),
        _whole,
        ("AKIA", "ASIA"),
    ),
    Rule(
        "SECRET",
        (rb"gh[pousr]_[A-Za-z0-9]{30}", rb"github_pat_[A-Za-z0-9_]{22}"),
        re.compile(
            r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255})"
            r"(?![A-Za-z0-9_])",
            _A,
        ),
        _whole,
        ("gh", "github_pat_"),
    ),
    Rule(
        "SECRET",
        (rb"xox[abeprs]-[A-Za-z0-9\-]{10}",),
        re.compile(r"(?<![\w\-])xox[abeprs]-[A-Za-z0-9\-]{10,}", _A),
        _whole,
        ("xox",),
    ),
    Rule(
        "SECRET",
        (rb"(?:[Bb]earer|BEARER)[ \t]+[A-Za-z0-9\-._~+/]{8}",),
        re.compile(r"(?<!\w)(?:[Bb]earer|BEARER)[ \t]+([A-Za-z0-9\-._~+/]{8,}=*)", _A),
        _check_bearer,
        ("earer", "EARER"),
    ),
    Rule(
        "SECRET",
        (rb"eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.",),
        re.compile(r"(?<![\w\-])eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*", _A),
        _whole,
        ("eyJ",),
    ),
    Rule(
        "SECRET",
        (rb"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----",),
        # A truncated block (no END line, common in clipped log bodies) is masked up to where the
        # base64 stops; inside JSON strings the line breaks are literal "\n" escapes.
        re.compile(
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----"
            r"(?:.*?-----END[A-Z0-9 ]*PRIVATE KEY-----|(?:[A-Za-z0-9+/=\s]|\\[nr])*)",
            re.ASCII | re.DOTALL,
        ),
        _whole,
        ("-----BEGIN",),
    ),
)

URL_CREDENTIALS = Rule(
    "URL_CREDENTIALS",
    (rb"://[^\s:/@\"'<>]+:[^\s/@\"'<>]*@",),
    # Only the userinfo is masked: scheme, host and path stay useful for debugging.
    re.compile(r"://([^\s:/@\"'<>]{1,128}:[^\s/@\"'<>]{1,256})@", _A),
    _group1,
    ("://",),
)

# --- person names and postal addresses (validators and word lists in pii_names) ----------------

PERSON_RULES: tuple[Rule, ...] = (
    Rule(
        "PERSON",
        (),
        re.compile(pii_names.TOKEN),
        pii_names.check_given_name,
        locate=pii_names.given_name_start,
        gazetteer=pii_names.LITERAL_GIVEN_NAMES,
    ),
    Rule(
        "PERSON",
        pii_names.context_anchors(pii_names.TITLES, caseless_first=False),
        pii_names.TITLE_RE,
        pii_names.check_title,
    ),
    Rule(
        "PERSON",
        pii_names.context_anchors(pii_names.GREETINGS, caseless_first=True),
        pii_names.GREETING_RE,
        pii_names.check_context,
    ),
    Rule(
        "PERSON",
        pii_names.closing_anchors(),
        pii_names.CLOSING_RE,
        pii_names.check_closing,
        locate=pii_names.closing_name_start,
    ),
    Rule(
        "PERSON",
        pii_names.context_anchors(pii_names.STRONG_INTROS, caseless_first=False),
        pii_names.STRONG_INTRO_RE,
        pii_names.check_context,
    ),
    Rule(
        "PERSON",
        pii_names.context_anchors(pii_names.WEAK_INTROS, caseless_first=False),
        pii_names.WEAK_INTRO_RE,
        pii_names.check_weak_intro,
    ),
)


def _hs_words(words: tuple[str, ...]) -> bytes:
    return "|".join(re.escape(w.encode("ascii", "replace").decode()) for w in words).encode()


# The English address anchor: house number, one to three capitalised words, a street type. `{x}`
# is where a non-ASCII letter may stand: '?' in the bytes Hyperscan scans, the letter itself in
# the text (a literal '?' matches in both).
_EN_ANCHOR = (
    r"[0-9]{{1,5}}[A-Za-z]?,? (?:[A-Z{x}][A-Za-z{x}'\-]* ){{1,3}}(?:"
    + _hs_words(pii_names.EN_STREET_TYPES).decode()
    + ")"
)
# The same anchor ending at a given offset, to find its start from the end Hyperscan reports
# (`_en_address_start`): tracking the start of this anchor inside Hyperscan made the numeric
# database's scan ~1 µs per span dearer (docs/pii.md, "two anchor databases").
_EN_ANCHOR_AT_END = re.compile(_EN_ANCHOR.format(x="?\x80-\U0010ffff") + r"\Z")
# Longest stretch searched back from the anchor's end for its number: three long street words.
_EN_ANCHOR_REACH = 160


def _en_address_start(text: str, end: int) -> int | None:
    """Leftmost start of the English address anchor that ends at `end`, as Hyperscan's
    start-of-match tracking would report it."""
    m = _EN_ANCHOR_AT_END.search(text, end - _EN_ANCHOR_REACH if end > _EN_ANCHOR_REACH else 0, end)
    return None if m is None else m.start()


ADDRESS_RULES: tuple[Rule, ...] = (
    Rule(
        "ADDRESS",
        ((_EN_ANCHOR.format(x="?") + r"\b").encode(),),
        pii_names.EN_ADDRESS,
        pii_names.check_en_address,
        needs_digit=True,
        locate=_en_address_start,
    ),
    Rule(
        "ADDRESS",
        (rb"[0-9]{1,4}(?: ?(?:bis|ter|[A-Z]))?,? (?i:" + _hs_words(pii_names.FR_STREET_TYPES) + rb") ",),
        pii_names.FR_ADDRESS,
        pii_names.check_en_address,
        needs_digit=True,
    ),
    Rule(
        "ADDRESS",
        (rb"\b(?:" + _hs_words(pii_names.SOUTH_STREET_TYPES) + rb") [A-Za-z?0-9]",),
        pii_names.SOUTH_ADDRESS,
        pii_names.check_south_address,
        needs_digit=True,
    ),
    Rule(
        "ADDRESS",
        (rb"[0-9]{1,4}[A-Za-z]?, (?:[0-9]{4} ?[A-Z]{2}|[0-9]{5}|[0-9]{4}-[0-9]{3}) [A-Z?]",),
        pii_names.POSTCODE_ADDRESS,
        pii_names.check_postcode_address,
        needs_digit=True,
    ),
    Rule(
        "ADDRESS",
        (rb"(?:" + _hs_words(pii_names.NORTH_SUFFIXES) + rb") [0-9]",),
        pii_names.NORTH_ADDRESS,
        pii_names.check_north_address,
        needs_digit=True,
        locate=pii_names.north_street_start,
    ),
)

# Order is the tie-break priority when two detections start at the same place with equal length.
BUILTIN_RULES: dict[str, tuple[Rule, ...]] = {
    "SECRET": SECRET_RULES,
    "URL_CREDENTIALS": (URL_CREDENTIALS,),
    "EMAIL": (EMAIL,),
    "CREDIT_CARD": (CREDIT_CARD,),
    "IBAN": (IBAN,),
    "US_SSN": (US_SSN,),
    "IP_ADDRESS": (IPV4, IPV6),
    "PHONE": (PHONE, PHONE_PAREN),
    "ADDRESS": ADDRESS_RULES,
    "PERSON": PERSON_RULES,
}

BUILTIN_DETECTORS: tuple[str, ...] = tuple(BUILTIN_RULES)


# --- normalisation for keyed hashes: equal values written differently hash the same ------------


# Characters that split a value in real text without changing what it is: no-break, narrow
# no-break (French), thin and figure spaces between the groups of a card, an IBAN or a phone
# number; soft hyphens and zero-width characters inside an address.
SPACE_LIKE = "\u00a0\u2007\u2009\u202f"
INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff"
_DEL_NUMBER_SEPS = str.maketrans("", "", " .-()/" + SPACE_LIKE + INVISIBLE)
_DEL_SPACES = str.maketrans("", "", " " + SPACE_LIKE + INVISIBLE)
_DEL_INVISIBLE = str.maketrans("", "", INVISIBLE)


def normalise_value(pii_type: str, value: str) -> str:
    """The value a hash token is made of: one token for one value however it was written."""
    if pii_type in ("PHONE", "CREDIT_CARD", "US_SSN"):
        return value.translate(_DEL_NUMBER_SEPS)
    if pii_type == "IBAN":
        return value.translate(_DEL_SPACES).upper()
    if pii_type in ("EMAIL", "IP_ADDRESS"):
        return value.translate(_DEL_INVISIBLE).lower()
    return value
