"""Person names and postal addresses: the gazetteer, the context words and the validators of the
PERSON and ADDRESS detectors (the `Rule`s themselves are in `pii_detectors`).

PERSON is found three ways, all validated here on the candidate only:

* a **given name** from the gazetteer (`data/person_names.txt`, built from Faker's per-locale
  lists, MIT licence), found by a Hyperscan *literal* database of ~5,800 names (a second scan of
  ~2-4 µs per 2 KB; a regex database of the same names takes minutes to compile, the literal
  compiler a quarter of a second). It is followed by up to three more name tokens (family names,
  initials, particles such as "van der", "de la", "di"). A given name alone is masked unless it is
  also a common word, a city, a month, a weekday or a model name ("Will", "May", "Paris",
  "Claude"): those need a second name or one of the contexts below.
* a **context** found in the main Hyperscan pass: a title ("Dr.", "Herr", "Mme", "Sig.ra", "Dhr."),
  a greeting ("Hi", "Liebe", "Bonjour", "Hola", "Ciao", "Beste") with the name followed by
  punctuation or a line break, a closing line ("Best regards,", "Mit freundlichen Grüßen",
  "Cordialement", "Un saludo", "Cordiali saluti", "Met vriendelijke groet") with the name alone on
  the next line, or an introduction ("my name is", "je m'appelle", "me llamo", "mi chiamo",
  "ik heet"). The capitalised tokens after it are the name, unless they are known non-names.
* the tokens are never one of `NEVER_NAME` (model and product names, months, weekdays, "Team").

ADDRESS: a street with its house number in each locale's order (number first in English and
French, street type first in Spanish, Italian and Portuguese, a street-type suffix in German and
Dutch), optionally followed by the postcode and city ("221B Baker Street, London NW1 6XE",
"Hauptstraße 5, 10115 Berlin", "Keizersgracht 123, 1015 CJ Amsterdam"). A street name without a
number, or a postcode and city alone, is not an address here.
"""

from __future__ import annotations

import re
from pathlib import Path

Span = tuple[int, int]

_DATA = Path(__file__).with_name("data") / "person_names.txt"


def _load_gazetteer() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    sections: dict[str, set[str]] = {}
    current: set[str] | None = None
    for line in _DATA.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), set())
        elif current is not None:
            current.add(line)
    return (
        frozenset(sections.get("given", ())),
        frozenset(sections.get("family", ())),
        frozenset(sections.get("common", ())),
    )


GIVEN_NAMES, FAMILY_NAMES, COMMON_WORDS = _load_gazetteer()


def words(text: str) -> list[str]:
    """A word list written as one block of text (long lists stay readable)."""
    return text.split()


# Capitalised words that are never (part of) a person's name here, whatever the gazetteer says:
# model and product names users write to and about assistants, and words that follow greetings.
NEVER_NAME: frozenset[str] = frozenset(
    words(
        """
    Claude Gemini Mistral Mixtral Llama Grok Gemma Phi Qwen Falcon Bard Copilot Cursor Devin
    Alexa Siri Cortana Jarvis Sonnet Opus Haiku Codex Ollama Perplexity Replit
    Kafka Apache Spark Jenkins Docker Kubernetes Redis Postgres Grafana Prometheus Django Flask
    React Angular Vue Node Windows Linux Ubuntu Debian Mac Microsoft Google Amazon Apple Meta
    OpenAI Anthropic Azure Bedrock Vertex GitHub Slack Jira Notion Stripe Shopify Salesforce
    Oracle Tesla Python Java Rust Haskell Swift Kotlin Scala Perl Elixir
    Team Teams All Everyone Everybody Folks Guys World Welt Monde Mundo Mondo Wereld Sir Madam
    Madame Monsieur Señor Señora Signore Signora Mevrouw Heer Damen Herren Kollegen Colleagues
    Support Admin Customer Client Kunde Kundin Friends Freunde Leute Amigos Amici Allemaal
    Zusammen Tous Todos Tutti There Again Bot Assistant Assistent Assistente Model Engineer
    Developer Manager Doctor Director Team Thanks Thank Please Bitte Merci Gracias Grazie Dank
    Danke Hi Hello Hey Dear Hallo Bonjour Hola Ciao The This That These Those It Its And Or But
    Not Yes No Ok Okay Sure Great Good Best Kind Regards Cheers Regarding Re Fwd Subject
    January February March April May June July August September October November December
    Monday Tuesday Wednesday Thursday Friday Saturday Sunday Today Tomorrow Yesterday
    Januar Februar März Juni Juli Oktober Dezember Montag Dienstag Mittwoch Donnerstag Freitag
    Samstag Sonntag
    German English French Spanish Italian Dutch Portuguese Polish Swedish Danish Norwegian Finnish
    Greek Turkish Russian Chinese Japanese Korean Arabic Hindi Latin Europe Asia Africa America
    Americas Oceania Australia Antarctica
    """
    )
)

# Given names that are also names of AI products ("Amazon Nova", Cohere's "Aya", "Harvey AI"):
# followed by a model tier or product word (PRODUCT_SUFFIXES) they are the product. Only these:
# "Thanks Anna AI team" or "Maria Plus, our new hire" are people.
PRODUCT_STEMS: frozenset[str] = frozenset(words("Nova Aya Harvey Julius Jasper Ernie Luma"))
PRODUCT_SUFFIXES: frozenset[str] = frozenset(
    words(
        """
    AI Pro Lite Micro Mini Nano Premier Expanse Ultra Turbo Flash Plus Preview Instruct Chat Coder
    Vision Embed Embedding Embeddings Reasoner Reasoning Agent Studio Cloud API SDK GPT LLM
    """
    )
)

# Given names that are also everyday words, places or names of things: masked only with context.
_AMBIGUOUS_EXTRA = frozenset(
    words(
        """
    Will Max Mark Bill Grace Hope Faith Joy June Pat Rich Frank Art Ray Rob Sue Sky Dawn Page
    Chase Hunter Sandy Penny Crystal Amber Ruby Jade Ivy Holly Iris Lily Daisy Violet Hazel Olive
    Angel Sunny Paris Florence Sydney Austin Dallas Houston Jackson Lincoln Madison Orlando
    Victoria Adelaide Regina Georgia Virginia Carolina Santiago Valencia Lourdes Nancy Denver
    Phoenix Chester Kent Devon Sierra Jordan Chelsea Milan Roma Siena Verona Dakota China India
    Mercedes Dolores Pilar Consuelo Amparo Luz Cruz Paz Sol Rosa Rose Nina Eve Ben Don Dean Earl
    Miles Summer Autumn Winter Storm River Rain Star Royal Price Ward Wade Drew Bob
    Julia Ada Ruby Pascal Watson Jasper
    """
    )
)

AMBIGUOUS_GIVEN: frozenset[str] = GIVEN_NAMES & (COMMON_WORDS | _AMBIGUOUS_EXTRA | NEVER_NAME)

# Given names matched by the literal pass: three letters or more (two-letter names like "Bo" would
# report inside every capitalised word), and not names that never count as one.
LITERAL_GIVEN_NAMES: tuple[str, ...] = tuple(
    sorted(n for n in GIVEN_NAMES if len(n) >= 3 and " " not in n and n not in NEVER_NAME)
)

# --- token shapes ------------------------------------------------------------------------------

_UP = "A-Z\u00c0-\u00d6\u00d8-\u00de\u0100-\u017f"
_LO = "a-z\u00df-\u00f6\u00f8-\u00ff\u0100-\u017f"
# "Anna", "Müller", "O'Brien", "D'Angelo", "McDonald", "Jean-Pierre", "Lloyd-Webber".
TOKEN = (
    rf"(?:[{_UP}]['’][{_UP}][{_LO}]+|[{_UP}][{_LO}]+(?:[{_UP}][{_LO}]+)?)"
    rf"(?:[-'’][{_UP}]?[{_LO}]+(?:[{_UP}][{_LO}]+)?)*"
)
_PARTICLE = (
    r"(?:van\ der|van\ den|van\ de|van\ 't|von\ der|von\ dem|de\ la|de\ los|de\ las|van|von|vom|zu|"
    r"del|della|dello|degli|dei|de|di|da|du|des|le|la|ten|ter|den|der|dos|das|do|y|e)"
)
_INITIAL = rf"[{_UP}]\."
# A following name token: an initial, or particles then a capitalised token. Spaces only (a line
# break ends a name).
_NEXT = rf"(?:[ \t]+(?:{_INITIAL}|(?:{_PARTICLE}[ \t]+)?{TOKEN}))"
_NAME_SEQ = rf"{TOKEN}{_NEXT}{{0,3}}"

_TOKEN_RE = re.compile(TOKEN)
_NEXT_RE = re.compile(_NEXT, re.VERBOSE)
_LETTERS_REVERSED = re.compile(r"[^\W\d_]+")
_FOLLOWING_WORD = re.compile(r"[ \t]+(\w+)")


def _letter(c: str) -> bool:
    return c.isalpha() or c.isdigit() or c == "_"


def given_name_start(text: str, end: int) -> int | None:
    """Start of the word a literal given-name report ends at; None inside a longer word."""
    if end < len(text) and _letter(text[end]):
        return None
    lo = end - 32 if end > 32 else 0
    run = _LETTERS_REVERSED.match(text[lo:end][::-1])
    if run is None or not run.end():
        return None
    start = end - run.end()
    # "Anna-Lena": the report for "Lena" starts at "Lena"; the one for "Anna" covers both.
    return start


def _tail_end(text: str, pos: int, strict: bool) -> int:
    """End of the name tokens that follow position `pos` (the end of a first name token)."""
    end = pos
    for _ in range(3):
        m = _NEXT_RE.match(text, end)
        if m is None:
            break
        word = m.group().strip()
        last = word.rsplit(" ", 1)[-1].rsplit("\t", 1)[-1]
        if last in NEVER_NAME or last.rstrip(".") in _TITLE_WORDS:
            break
        if last.endswith(".") and len(last) == 2:  # an initial must be followed by a name
            nxt = _NEXT_RE.match(text, m.end())
            if nxt is None or nxt.group().strip().endswith("."):
                break
            end = m.end()
            continue
        # After a particle ("Jan de Vries", "Maria del Carmen") a capitalised word is a name.
        particle = last != word
        if not particle and last in COMMON_WORDS and last not in FAMILY_NAMES:
            break
        if strict and not particle and last not in FAMILY_NAMES:
            break
        end = m.end()
    return end


def check_given_name(m: re.Match[str]) -> Span | None:
    """A gazetteer given name and the name tokens that follow it."""
    text = m.string
    start = m.start()
    if start and _letter(text[start - 1]):
        return None
    first = m.group()
    end = m.end()
    if (end < len(text) and text[end] in "/\\_@") or (start and text[start - 1] in "/\\_.@"):
        return None  # a path, a time zone, an identifier ("Asia/Tokyo", "src/Anna.py")
    head = first.split("-", 1)[0]
    if head not in GIVEN_NAMES or first in NEVER_NAME:
        return None
    if _after_street_type(text, start):
        return None  # "Rua Augusta", "Via Giuseppe Verdi": a street named after someone
    if head in PRODUCT_STEMS:
        nxt = _FOLLOWING_WORD.match(text, end)
        if nxt is not None and nxt.group(1) in PRODUCT_SUFFIXES:
            return None  # "Nova Pro", "Harvey AI": a product named like someone
    ambiguous = head in AMBIGUOUS_GIVEN
    # Sentence-initial ambiguous names ("Will Python ...", "May Day") need a known family name.
    initial = ambiguous and _sentence_start(text, start)
    end = _tail_end(text, m.end(), strict=initial)
    if end == m.end() and ambiguous:
        return None
    return start, end


def _after_street_type(text: str, start: int) -> bool:
    lo = start - 16 if start > 16 else 0
    words = text[lo:start].split()
    return bool(words) and words[-1] in STREET_PREFIXES


def _sentence_start(text: str, start: int) -> bool:
    i = start - 1
    while i >= 0 and text[i] in " \t\x01\"'(“«":
        i -= 1
    return i < 0 or text[i] in ".!?\n\r:;"


# --- contexts ---------------------------------------------------------------------------------

TITLES = (
    "Dr", "Mr", "Mrs", "Ms", "Mx", "Miss", "Prof", "Herr", "Frau", "Mme", "Mlle", "Sr", "Sra", "Srta",
    "Sig", "Sig.ra", "Sig.na", "Dott", "Dott.ssa", "Dhr", "Mevr", "Ing", "Avv", "Doña", "Dña", "M.",
)  # fmt: skip
_TITLE_WORDS = frozenset(t.rstrip(".") for t in TITLES)
GREETINGS = (
    "Hi", "Hello", "Hey", "Dear", "Hallo", "Liebe", "Lieber", "Moin", "Servus", "Bonjour", "Bonsoir",
    "Salut", "Coucou", "Cher", "Chère", "Hola", "Querido", "Querida", "Estimado", "Estimada", "Ciao",
    "Caro", "Cara", "Gentile", "Buongiorno", "Salve", "Hoi", "Beste", "Goedemorgen", "Goedemiddag",
    "Thanks", "Thank you", "Merci", "Danke", "Gracias", "Grazie", "Bedankt",
)  # fmt: skip
CLOSINGS = (
    "Best regards", "Kind regards", "Warm regards", "Regards", "Best wishes", "Best", "Cheers",
    "Sincerely", "Yours sincerely", "Yours truly", "Many thanks", "Thanks", "Thank you",
    "Mit freundlichen Grüßen", "Freundliche Grüße", "Viele Grüße", "Liebe Grüße", "Beste Grüße",
    "Herzliche Grüße", "Grüße", "Gruß", "Cordialement", "Bien cordialement", "Bien à vous",
    "Amicalement", "Bisous", "Saludos", "Un saludo", "Atentamente", "Saludos cordiales", "Cordiali saluti",
    "Distinti saluti", "Saluti", "Un saluto", "Met vriendelijke groet", "Vriendelijke groeten",
    "Hartelijke groet", "Groeten", "Groetjes",
)  # fmt: skip
STRONG_INTROS = (
    "my name is", "My name is", "call me", "Call me", "mein Name ist", "Mein Name ist", "ich heiße",
    "Ich heiße", "je m'appelle", "Je m'appelle", "me llamo", "Me llamo", "mi nombre es",
    "Mi nombre es", "mi chiamo", "Mi chiamo", "il mio nome è", "Il mio nome è", "mijn naam is",
    "Mijn naam is", "ik heet", "Ik heet", "signed", "Signed", "Name:", "name:", "Nom :", "Nom:",
    "Nombre:", "Nome:", "Naam:",
)  # fmt: skip
WEAK_INTROS = ("I'm", "I am", "this is", "This is", "ich bin", "Ich bin", "je suis", "Je suis", "soy",
               "Soy", "sono", "Sono", "ik ben", "Ik ben", "It's", "it's")  # fmt: skip


def _alternation(words: tuple[str, ...]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_GAP = r"[ \t\x01]"  # \x01: JSON escapes blanked in the probe of a JSON string
_TITLE_RE = re.compile(
    rf"\b(?:{_alternation(TITLES)})\.?{_GAP}+((?:{_PARTICLE}[ \t]+)?{_NAME_SEQ})", re.VERBOSE
)
# The context word is case-insensitive ("hi Anna"), the name is not ("hi there" is no name).
_GREETING_RE = re.compile(
    rf"\b(?i:{_alternation(GREETINGS)}),?{_GAP}+({_NAME_SEQ})(?=[ \t]*(?:[,!.:;\n\r\x01]|$))"
)
# The closing rule is reported without start-of-match (SOM on this anchor costs ~5 µs per 2 KB):
# the report ends at the name's first letter, and the closing words are checked backwards.
_CLOSING_RE = re.compile(rf"({_NAME_SEQ})(?=[ \t]*(?:[,.\n\r\x01]|$))")
_CLOSING_BEFORE = re.compile(
    rf"\b(?i:{_alternation(CLOSINGS)})(?:,[ \t\x01]*|[,.!]?[ \t\x01]*(?:\r?\n|\x01\x01)[ \t\x01]*)\Z"
)
_CLOSING_LOOKBACK = 48
_STRONG_INTRO_RE = re.compile(rf"\b(?:{_alternation(STRONG_INTROS)}){_GAP}+({_NAME_SEQ})")
_WEAK_INTRO_RE = re.compile(rf"\b(?:{_alternation(WEAK_INTROS)}){_GAP}+({_NAME_SEQ})")

# Regex alternations handed to the caller: the context word plus the first capital, ASCII bytes.
TITLE_RE, GREETING_RE, CLOSING_RE = _TITLE_RE, _GREETING_RE, _CLOSING_RE
STRONG_INTRO_RE, WEAK_INTRO_RE = _STRONG_INTRO_RE, _WEAK_INTRO_RE


def _name_group(m: re.Match[str], strict_first: bool) -> Span | None:
    """The name after a context word, cut before the first token that is not a name."""
    start = m.start(1)
    if start and _letter(m.string[start - 1]) and m.string[start - 1] != "\x01":
        return None
    text = m.string
    first = _TOKEN_RE.match(text, start)
    after_particle = first is None and text[start].islower()
    if after_particle:  # "Mevr. de Jong", "Dhr. van der Berg"
        first = _TOKEN_RE.search(text, start, m.end(1))
    if first is None:
        return None
    word = first.group()
    if word in NEVER_NAME or word in _TITLE_WORDS:  # "Frau Dr. Weber": the "Dr." match has the name
        return None
    if strict_first and word.split("-", 1)[0] not in GIVEN_NAMES and word not in FAMILY_NAMES:
        return None
    if not after_particle and word in COMMON_WORDS and word not in GIVEN_NAMES and word not in FAMILY_NAMES:
        return None
    return start, _tail_end(text, first.end(), strict=False)


def check_title(m: re.Match[str]) -> Span | None:
    # "M." is a title only with its dot and a capitalised name after it ("M. Dupont").
    return _name_group(m, strict_first=False)


def check_context(m: re.Match[str]) -> Span | None:
    return _name_group(m, strict_first=False)


def closing_name_start(_text: str, end: int) -> int:
    return end - 1  # the anchor ends with the name's first letter


def check_closing(m: re.Match[str]) -> Span | None:
    start = m.start()
    if start and _letter(m.string[start - 1]):
        return None
    lo = start - _CLOSING_LOOKBACK if start > _CLOSING_LOOKBACK else 0
    if _CLOSING_BEFORE.search(m.string, lo, start) is None:
        return None
    return _name_group(m, strict_first=False)


def check_weak_intro(m: re.Match[str]) -> Span | None:
    return _name_group(m, strict_first=True)


def context_anchors(words: tuple[str, ...], caseless_first: bool) -> tuple[bytes, ...]:
    """Hyperscan anchors for context words: the word (ASCII bytes, non-ASCII as '?') then a gap and
    a capital (or a non-ASCII letter, '?'). The first letter also in lower case when asked."""
    alts: set[str] = set()
    for w in words:
        alts.add(w)
        if caseless_first:
            alts.add(w[0].lower() + w[1:])
    parts = sorted(re.escape(w.encode("ascii", "replace").decode()) for w in alts)
    # A name, or a particle that starts one ("Mevr. de Jong", "Dhr. van der Berg").
    first = r"(?:[A-Z?]|(?:van|von|de|di|da|du|del|della|le|la|ten|ter) )"
    return (("\\b(?:" + "|".join(parts) + r")\.?,?[ \t\x01]+" + first).encode(),)


def closing_anchors() -> tuple[bytes, ...]:
    parts = sorted(
        {re.escape(v.encode("ascii", "replace").decode()) for w in CLOSINGS for v in (w, w.lower())}
    )
    # The name after a comma on the same line, or on the next line: "Thanks for" or "Best of"
    # are not reported at all (a plain space after the word costs ~7 µs per 2 KB in callbacks).
    gap = r"(?:,[ \t\x01]*|[,.!]?[ \t\x01]*(?:\r?\n|\x01\x01)[ \t\x01]*)"
    return (("\\b(?:" + "|".join(parts) + ")" + gap + "[A-Z?]").encode(),)


# --- addresses ----------------------------------------------------------------------------------

_W = rf"[{_UP}][{_LO}'’]+(?:-[{_UP}]?[{_LO}'’]+)*-?"  # a capitalised word of a street or city name
_CITY = rf"{_W}(?:[ \-](?:am|an der|im|sur|upon|de|del|di|aan den|aan de|{_W})){{0,2}}"
_NUMBER = r"\d{1,4}(?:[ ]?[A-Za-z](?![A-Za-z]))?(?:[\-/]\d{1,4}[A-Za-z]?)?"
# Postcode and city, in any of the locales' orders; a UK/US/IE postcode after the city.
_POST_CITY = (
    rf"(?:,?[ ](?:D-|F-|I-|E-|NL-|B-|A-|CH-|P-)?"
    rf"(?:\d{{5}}|\d{{4}}[ ]?[A-Z]{{2}}|\d{{4}}-\d{{3}}|\d{{4}})[ ]{_CITY}"
    rf"(?:[ ]\(?[A-Z]{{2}}\)?)?"  # Italian province "(RM)"
    rf"|,[ ]{_CITY}(?:,?[ ](?:[A-Z]{{1,2}}\d[A-Z\d]?[ ]?\d[A-Z]{{2}}|[A-Z]{{2}}[ ]\d{{5}}(?:-\d{{4}})?))?)?"
)
EN_STREET_TYPES = (
    "Street", "St", "Road", "Rd", "Avenue", "Ave", "Lane", "Ln", "Drive", "Dr", "Boulevard", "Blvd",
    "Way", "Court", "Ct", "Place", "Pl", "Square", "Sq", "Terrace", "Close", "Crescent", "Gardens",
    "Row", "Parkway", "Pkwy", "Highway", "Hwy", "Circle", "Mews", "Walk", "Hill", "Park",
)  # fmt: skip
FR_STREET_TYPES = (
    "rue", "avenue", "av.", "boulevard", "bd", "place", "chemin", "allée", "impasse", "quai", "cours",
    "route", "square", "passage", "rue de la", "Rue", "Avenue", "Boulevard", "Place", "Chemin",
)  # fmt: skip
SOUTH_STREET_TYPES = (
    "Calle", "C/", "Avenida", "Avda.", "Avda", "Paseo", "Plaza", "Camino", "Carrera", "Ronda",
    "Travesía", "Carretera", "Gran Vía", "Vía", "Via", "Viale", "Piazza", "Piazzale", "Corso", "Largo",
    "Vicolo",
    "Strada", "Lungomare", "Rua", "Praça", "Travessa", "Largo", "Rue", "Avenue", "Boulevard", "Place",
)  # fmt: skip
# German and Dutch: the type is a suffix of the street's word ("Hauptstraße", "Keizersgracht").
NORTH_SUFFIXES = (
    "straße", "strasse", "str.", "gasse", "allee", "platz", "weg", "ring", "damm", "ufer", "steig",
    "chaussee", "markt", "straat", "laan", "gracht", "plein", "kade", "singel", "dijk", "steeg", "hof",
    "pad", "Straße", "Strasse", "Weg", "Platz", "Allee", "Gasse", "Ring", "Damm", "Ufer", "Markt",
)  # fmt: skip
STREET_PREFIXES = frozenset(SOUTH_STREET_TYPES) | frozenset(EN_STREET_TYPES) | {"Rue", "rue", "avenue"}
_STRONG_NORTH = ("straße", "strasse", "str.", "gasse", "allee", "platz", "weg", "straat", "laan",
                 "gracht", "plein", "kade", "singel", "dijk", "steeg")  # fmt: skip

_EN_ADDRESS = re.compile(
    rf"\d{{1,5}}[A-Za-z]?,?[ ](?:{_W}[ ]){{1,3}}(?:{_alternation(EN_STREET_TYPES)})\.?(?![\w])"
    rf"{_POST_CITY}"
)
_FR_ADDRESS = re.compile(
    rf"\d{{1,4}}(?:[ ]?(?:bis|ter|[A-Z](?![\w])))?,?[ ](?i:{_alternation(FR_STREET_TYPES)})"
    rf"(?:[ ](?:de[ ]la|de[ ]l'|d'|de|du|des|la|le|les|l'|{_W})){{1,5}}{_POST_CITY}",
)
_SOUTH_ADDRESS = re.compile(
    rf"(?:{_alternation(SOUTH_STREET_TYPES)})(?:[ ](?:de[ ]la|de[ ]los|de[ ]las|del|de|della|delle|dei|"
    rf"degli|di|da|dos|das|do|la|le|{_W}|\d{{1,2}}[ ](?:de[ ])?{_W})){{1,5}},?[ ]"
    rf"(?:n\.?[ ]?º?|nº[ ]?|No\.[ ]?)?"
    rf"{_NUMBER}(?![\d])(?:,?[ ]\d+º?[ ]?[A-Za-z]?(?=,))?{_POST_CITY}"
)
_NORTH_ADDRESS = re.compile(
    rf"(?:(?:{_W}|[ ]|-)*?)(?:{_alternation(NORTH_SUFFIXES)})[ ]{_NUMBER}(?!\d){_POST_CITY}"
)
_NORTH_WORD_REVERSED = re.compile(rf"(?:[{_UP}{_LO}\-]+[ ])?[{_UP}{_LO}\-.]*")
_TRAILING_POSTCODE = re.compile(r"\d{4,5}")


def check_en_address(m: re.Match[str]) -> Span | None:
    start = m.start()
    if start and _letter(m.string[start - 1]):
        return None
    return m.span()


def check_south_address(m: re.Match[str]) -> Span | None:
    start = m.start()
    if start and _letter(m.string[start - 1]):
        return None
    return m.span()


def north_street_start(text: str, end: int) -> int | None:
    """Start of a German/Dutch street name ending at the report (type suffix, space, first digit)."""
    type_end = end - 2  # the anchor ends with " " and one digit
    lo = type_end - 48 if type_end > 48 else 0
    run = _NORTH_WORD_REVERSED.match(text[lo:type_end][::-1])
    assert run is not None  # `*` always matches
    start = type_end - run.end()
    while start < type_end and not text[start].isupper():
        start += 1  # street names start with a capital ("Hauptstraße", "Am Markt", "Unter den Linden")
    return start if start < type_end else None


# A street without a type word ("Damrak 1, 1012 LG Amsterdam", "Lange Voorhout 34, 2514 EE Den
# Haag"): the house number, a comma, a postcode and a city are evidence enough. Matched from the
# number; the street words before it are found backwards.
POSTCODE_ADDRESS = re.compile(rf"{_NUMBER},[ ](?:\d{{4}}[ ]?[A-Z]{{2}}|\d{{5}}|\d{{4}}-\d{{3}})[ ]{_CITY}")
_STREET_WORDS_REVERSED = re.compile(
    rf"[ ](?:[{_LO}'’\-]*[{_UP}](?:[ ](?:[{_LO}]{{1,3}}|[{_LO}'’\-]*[{_UP}])){{0,3}})"
)


def check_postcode_address(m: re.Match[str]) -> Span | None:
    text = m.string
    start = m.start()
    if start and _letter(text[start - 1]):
        return None
    lo = start - 48 if start > 48 else 0
    run = _STREET_WORDS_REVERSED.match(text[lo:start][::-1])
    if run is None:
        return None
    street_start = start - run.end()
    if text[street_start:start].strip() in NEVER_NAME:
        return None
    return street_start, m.end()


def check_north_address(m: re.Match[str]) -> Span | None:
    text = m.string
    start, end = m.span()
    if start and _letter(text[start - 1]):
        return None
    street = text[start:end]
    strong = any(s in street for s in _STRONG_NORTH) or "Stra" in street
    if not strong and _TRAILING_POSTCODE.search(street) is None:
        return None  # "String 5", "Hof 3": only with a postcode after them
    return start, end


EN_ADDRESS, FR_ADDRESS, SOUTH_ADDRESS, NORTH_ADDRESS = (
    _EN_ADDRESS,
    _FR_ADDRESS,
    _SOUTH_ADDRESS,
    _NORTH_ADDRESS,
)
