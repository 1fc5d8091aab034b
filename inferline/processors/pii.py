"""PII and secret masking for prompts, completions, span attributes, span events and log bodies.

Engine choice (measured on a 2 KB chat record with a few PII values, see bench/bench_pii.py):

* Python `re` with one pattern per detector costs ~50 µs per pattern per 2 KB: a leading lookbehind
  disables `re`'s literal/charset prefix scan, so every position is tried. ~500 µs in all.
* google-re2 `finditer` over one combined pattern: ~15 µs with a handful of matches, but every match
  object crosses the pybind layer (~1.3 µs each) and RE2 has no lookarounds for the boundaries.
* Hyperscan (chosen): one block-mode scan of all anchors costs ~2 µs per 2 KB of prose and ~8-10 µs
  on digit-heavy text (ids, timestamps), plus ~0.5 µs per reported hit. Anchors are short
  prefixes of each detector with HS_FLAG_SOM_LEFTMOST, so a candidate is reported once or twice
  with its start; the exact Python regex then runs anchored (`pattern.match(text, start)`) on the
  candidate only, and validators (Luhn, mod-97, SSN ranges,
  octets) run only on what matched. Measured: ~10 µs per 2 KB record without PII, ~20 µs with a
  few PII values (bench/bench_pii.py).

Without Hyperscan (not importable, or a pattern it cannot compile) the same exact regexes run
with `finditer` over the whole text, each gated by a substring prefilter ('@', '://', 'sk-', a
digit, ...). Same results, roughly 15-30x slower.

The processor (`PiiMasker.process`) scans a whole batch at once: every value the row walk would
scan, each distinct one once, joined into one buffer for one call per Hyperscan database
(`_Engine.find_many`, reports mapped back to their value); only the rows with a detection are then
walked. A call per value cost ~0.5 µs of fixed overhead each, ~10 per GenAI span.

Structured values (JSON strings in attributes, log bodies, tool-call arguments) are parsed and
their string leaves scanned and masked, so a mask never lands inside a JSON escape
(`\\njane@x.com`) and an escaped name ("Am\\u00e9lie") reads as one. Their leaves are mostly the
message texts the inference row holds as well, so the batch scans those once. A masked value is
written back where it stands in the JSON text, keeping the sender's formatting.
"""

from __future__ import annotations

import fnmatch
import hmac
import json
import logging
import re
import threading
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from itertools import accumulate, compress
from operator import add, itemgetter
from types import ModuleType
from typing import Any, Final, NamedTuple

import orjson
from mypy_extensions import mypyc_attr

from inferline.core.records import Batch, Row
from inferline.processors.conventions.field_sources import DEFAULT_TENANT_KEYS, SESSION, USER
from inferline.processors.pii_config import PiiConfig
from inferline.processors.pii_detectors import (
    BUILTIN_RULES,
    INVISIBLE,
    SPACE_LIKE,
    Rule,
    normalise_value,
)

_hs: ModuleType | None
try:  # the fast engine; optional so the pipeline still runs (slower) where it is not installed
    import hyperscan as _hs

    from inferline.processors.hyperscan_cache import compile_database
except ImportError:  # pragma: no cover - exercised only where hyperscan is missing
    _hs = None

log = logging.getLogger(__name__)

DEFAULT_ATTRIBUTES: Final[tuple[str, ...]] = (
    "gen_ai.prompt*",
    "gen_ai.completion*",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "llm.input_messages.*",
    "llm.output_messages.*",
    "input.value",
    "output.value",
    "ai.prompt*",
    "ai.response.text",
    "ai.response.object",
    "ai.response.toolCalls",
    "langfuse.observation.input",
    "langfuse.observation.output",
    "traceloop.entity.input",
    "traceloop.entity.output",
)

# Attribute keys never masked (exact names or fnmatch globs): identifiers, enums, model names,
# routes, numbers sent as strings. Every other string value is scanned (`mask_all_attributes`).
DEFAULT_NEVER_MASK: Final[tuple[str, ...]] = (
    "service.name",
    "service.namespace",
    "service.version",
    "service.instance.id",
    "deployment.environment*",
    "telemetry.*",
    "process.runtime.*",
    "process.pid",
    "host.arch",
    "host.id",
    "os.type",
    "os.version",
    "cloud.provider",
    "cloud.region",
    "cloud.platform",
    "k8s.*.uid",
    "container.id",
    "http.route",
    "http.method",
    "http.request.method",
    "http.status_code",
    "http.response.status_code",
    "url.scheme",
    "network.protocol.*",
    "rpc.system",
    "rpc.service",
    "rpc.method",
    "db.system",
    "db.system.name",
    # Not `db.operation*`: `db.operation.parameter.<key>` holds a query's bind values.
    "db.operation",
    "db.operation.name",
    "db.operation.batch.size",
    "messaging.system",
    "otel.status_code",
    "error.type",
    "exception.type",
    "code.*",
    "thread.id",
    "thread.name",
    "log.level",
    "logger.name",
    "gen_ai.system",
    "gen_ai.provider.name",
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.response.id",
    "gen_ai.response.finish_reasons",
    "gen_ai.request.temperature",
    "gen_ai.request.top_p",
    "gen_ai.request.max_tokens",
    "gen_ai.usage.*",
    "gen_ai.output.type",
    "gen_ai.token.type",
    "gen_ai.tool.name",
    "gen_ai.tool.type",
    "gen_ai.tool.call.id",
    "gen_ai.agent.id",
    "gen_ai.conversation.id",
    "llm.model_name",
    "llm.request.model_name",
    "llm.response.model_name",
    "embedding.model_name",
    # OpenLIT's application name: `llm_inferences.service_name` when the resource has none.
    "gen_ai.application_name",
    "llm.provider",
    "llm.system",
    "llm.token_count.*",
    "llm.*.role",
    "llm.*.message.role",
    "openinference.span.kind",
    "traceloop.span.kind",
    "traceloop.entity.name",
    "traceloop.workflow.name",
    "ai.model.*",
    "ai.operationId",
    "ai.usage.*",
    "ai.response.finishReason",
    "ai.response.id",
    "ai.response.model*",
    "langfuse.observation.type",
    # Not `langfuse.observation.model*`: `….model.parameters` is a JSON of request parameters,
    # OpenAI's `user` among them.
    "langfuse.observation.model.name",
    "session.id",
    # Ids, user ids included: `user.id` / `enduser.id` feed the llm_inferences `user_id` column
    # (not masked either) and erasure finds an end user's spans by them. `user.email` and other
    # user attributes are scanned.
    "*.trace_id",
    "*.span_id",
    "*.request_id",
    "*.id",
    "*_id",
    "*Id",
    "*.role",
    "*.mime_type",
    "*.level",
    "*.environment",
    "*.usage_details",
    "*.timestamp",
    "*.finish_reason*",
    "operation.name",
)
# (Not the attributes inferline writes itself, `inferline.truncated` and the like, nor `otel.scope.*`:
# a sender can set any key, so a never-masked one lets free text past the masking. Their own values,
# "true" or a library's name, are scanned and left as they are.)

# Keys of JSON values whose values are not scanned: none. A key's name says nothing of what a
# sender put under it: a tool call's arguments, a log body or any JSON attribute may hold
# {"name": "Dr. Hans Müller", "id": "jane@example.com"}, and a message's `name` is its author's.
# Identifiers and enums (call ids, roles, types) are scanned too: no detector matches them
# (tests/test_pii.py), and they are few bytes of a message. (Until 2026-12-05 role, id,
# tool_call_id, name, type and finish_reason were skipped at every depth of every JSON value.)
MESSAGE_SKIP_KEYS: Final[frozenset[str]] = frozenset()

MAX_DEPTH: Final = 64  # nesting of lists/dicts walked when masking structured content


# What the per-masker caches keep at most per entry: instrumentations write a few dozen short keys.
_MAX_CACHED_KEY: Final = 256  # characters of an attribute key
_MAX_CACHED_LAYOUT: Final = 256  # keys of an attribute map


class TooDeep(ValueError):
    pass


ERROR_KEY: Final = "ERROR"  # counted in pii_found when a row could not be scanned and was redacted instead
REDACTED: Final = "<REDACTED>"


class _BatchScan(NamedTuple):
    """What one batch's pre-scan found (`PiiMasker._prescan`), for the walk of its rows."""

    found: dict[str, list[tuple[int, int, str]]]  # scanned text -> its detections (only if any)
    texts: AbstractSet[str]  # every scanned text (not in `found`: nothing to mask)
    values: AbstractSet[str]  # every value collected from the rows (and JSON values' leaves)
    dirty: AbstractSet[str]  # the values with something to mask (or that the walk must decide)


class Detection(NamedTuple):
    start: int
    end: int
    pii_type: str


# Detectors read the characters that split a value (pii_detectors.SPACE_LIKE, INVISIBLE) as what
# they stand for, one character for one (the offsets stay the text's); the masked text keeps them.
_PLAIN: Final = str.maketrans(dict.fromkeys(SPACE_LIKE, " ") | dict.fromkeys(INVISIBLE, "-"))
_SPLITTERS: Final = SPACE_LIKE + INVISIBLE
_INVISIBLE_RE: Final = re.compile(f"[{INVISIBLE}]")


def _plain(text: str) -> str:
    """`text` as the detectors read it; the same object when it holds none of those characters
    (an ASCII text never does: `isascii` is O(1))."""
    if text.isascii():
        return text
    for c in _SPLITTERS:
        if c in text:
            return text.translate(_PLAIN)
    return text


def _on_match(rule_id: int, start: int, end: int, _flags: int, hits: list[tuple[int, int, int]]) -> None:
    hits.append((rule_id, start, end))


_END: Final = itemgetter(2)  # a report's end offset


def _whole_match(m: re.Match[str]) -> tuple[int, int] | None:
    return m.span()


_DIGIT: Final = re.compile(r"\d", re.ASCII)
# JSON escapes, blanked to a non-word control character of the same length before a JSON text is
# scanned as text, so that "\n+1 415 555 0132" still looks like a phone number after a boundary
# and match offsets are offsets in the JSON text.
_JSON_ESCAPE: Final = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|.)", re.DOTALL)


# Compiled with mypyc (tools/compile_hot_path.py); subclasses written in Python are allowed so that
# tests can make a step fail (a compiled instance's methods cannot be replaced).
@mypyc_attr(allow_interpreted_subclasses=True)
class _Engine:
    """Finds detections for a fixed rule list; Hyperscan when available, `re` otherwise."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        # Characters that may not precede a match, per rule: tells whether a reported start at 0
        # is the match itself (`^`) or the one context character the anchor consumed.
        self.left_sets: list[frozenset[str] | None] = [
            None if r.left is None else _ascii_class(r.left) for r in rules
        ]
        self.dbs: tuple[Any, ...] = ()  # the anchor databases (`_build_hyperscan`), each scanned
        self.literal_db: Any = None  # the names gazetteer: a literal-only database, scanned last
        self.literal_rids: list[int] = []  # literal id -> rule index
        self.scan_rules: list[int] = []  # rules run by `re.finditer` over the whole text
        self._local = threading.local()  # Hyperscan scratch is per thread
        if _hs is not None:
            self._build_hyperscan()
        else:
            self.scan_rules = list(range(len(rules)))

    def _build_hyperscan(self) -> None:
        assert _hs is not None
        # Two anchor databases: the numeric rules' (anchors led by digit classes: cards, phones,
        # addresses, ...) and the others' (led by literals: key prefixes, "@", titles, greetings).
        # Hyperscan builds one set of engines per database and the two kinds slow each other down:
        # on the stage table's batch one database of all anchors scans in ~14 µs per span, the two
        # apart in ~10.5 (docs/pii.md, "Measured: two anchor databases").
        groups: tuple[list[tuple[int, tuple[bytes, ...], int]], ...] = ([], [])
        words: dict[bytes, int] = {}
        for rid, rule in enumerate(self.rules):
            if rule.gazetteer:
                # Each word with each character that may end it: a bare "Dan" would be reported
                # inside every "Danke" (a callback each), and literals have no word boundaries.
                # Non-ASCII letters are '?' in the scanned bytes, so they are in the literals too.
                for w in rule.gazetteer:
                    encoded = w.encode("ascii", "replace")
                    for end in _WORD_ENDS:
                        words.setdefault(encoded + end, rid)
                continue
            rule_flags = 0 if rule.locate is not None else _hs.HS_FLAG_SOM_LEFTMOST
            if rule.exact.flags & re.IGNORECASE:
                rule_flags |= _hs.HS_FLAG_CASELESS
            if not rule.anchors:
                self.scan_rules.append(rid)
                continue
            anchors = rule.anchors
            if rule.left is not None:
                anchors = tuple(b"(?:^|[^" + rule.left.encode() + b"])(?:" + a + b")" for a in anchors)
            groups[1 if rule.needs_digit else 0].append((rid, anchors, rule_flags))
        if words:
            self.literal_rids = list(words.values())
            self.literal_db = _literal_database(tuple(words))
        self.dbs = tuple(db for db in map(self._compiled, groups) if db is not None)
        self.scan_rules.sort()

    def _compiled(self, anchored: list[tuple[int, tuple[bytes, ...], int]]) -> Any:
        """One database of these rules' anchors (None without any). A rule Hyperscan cannot
        compile (e.g. a custom pattern with lookarounds) runs with `re` instead (`scan_rules`);
        found one by one only then, since each test compile costs."""
        assert _hs is not None
        try:
            return _anchor_database(anchored)
        except _hs.error:
            ok = {rid for rid, anchors, f in anchored if all(_hs_compiles(a, f) for a in anchors)}
            self.scan_rules.extend(rid for rid, _, _ in anchored if rid not in ok)
            return _anchor_database([rule for rule in anchored if rule[0] in ok])

    def _scratch(self) -> tuple[tuple[Any, ...], Any]:
        """Scratch of each anchor database, and of the literal one (None without it)."""
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            assert _hs is not None
            scratch = (
                tuple(_hs.Scratch(db) for db in self.dbs),
                _hs.Scratch(self.literal_db) if self.literal_db is not None else None,
            )
            self._local.scratch = scratch
        return scratch

    def find(self, text: str, allow: frozenset[str]) -> list[tuple[int, int, int]]:
        """(start, -end, rule index) for validated, not allow-listed matches; may overlap."""
        original = text
        text = _plain(text)
        found: list[tuple[int, int, int]] = []
        if self.dbs or self.literal_db is not None:
            # One byte per character so Hyperscan offsets are `str` offsets: non-ASCII becomes '?',
            # which is a non-word character exactly as it is under re.ASCII.
            data = text.encode("ascii") if text.isascii() else text.encode("ascii", "replace")
            hits: list[tuple[int, int, int]] = []
            scratches, literal_scratch = self._scratch()
            self._scan_anchors(data, hits, scratches)
            # A name starts with a capital: all-lowercase text (ids, URLs, enums) skips the scan.
            if self.literal_db is not None and not text.islower():
                literal_hits: list[tuple[int, int, int]] = []
                # The space lets a word at the very end of the text match with its end character.
                self.literal_db.scan(
                    data + b" ", match_event_handler=_on_match, context=literal_hits, scratch=literal_scratch
                )
                if literal_hits:
                    # Reported ends include the end character: the rule sees the word's own end.
                    rids = self.literal_rids
                    hits.extend((rids[lid], start, end - 1) for lid, start, end in literal_hits)
            if hits:
                found = self._confirm(text, hits, allow)
        if self.scan_rules:
            self._find_by_re(text, allow, found)
        if text is not original:
            found += self._found_without_invisible(original, allow)
        return found

    @property
    def batchable(self) -> bool:
        """Whether `find_many` gives the same results as `find` per text: every rule is in the
        Hyperscan databases and none can match across the separator (custom patterns might)."""
        return bool(self.dbs) and not self.scan_rules

    def find_many(self, texts: list[str], allow: frozenset[str]) -> list[list[tuple[int, int, int]]]:
        """`find` of each text, with one scan per Hyperscan database over all of them.

        Each call has a fixed cost (~0.5 µs, plus the Python callback setup) and a batch holds
        thousands of short and long values, so the texts are joined with `_SEPARATOR` and
        every report is mapped back to the text its match ends in. No anchor can match across
        the separator (see `_SEPARATOR`), so each text sees the same reports as alone: the
        separator's NUL plays the part of `^` for the left-context anchors (a reported start of
        -1 is the context character, as a start of 0 at `^` is), its space is the end character
        `find` appends for the literal scan, and reports ending past a text's end (an anchor
        ending in a space) are dropped, as a scan of the text alone cannot make them."""
        assert self.dbs
        # Texts without a report share one empty list (callers only read it).
        out: list[list[tuple[int, int, int]]] = [_NO_HITS] * len(texts)
        if not texts:
            return out
        originals = texts
        texts = [_plain(t) for t in texts]
        # Encoded one by one (most values are ASCII: a copy) rather than joined first: a joined
        # `str` takes 4 bytes per character as soon as one value holds an emoji. The trailing
        # space is the last text's end character for the literal scan (added to the last part,
        # not to the joined buffer: that would copy the whole batch's text once more).
        parts = [t.encode("ascii", "replace") for t in texts]
        parts[-1] += b" "
        data = _SEPARATOR_BYTES.join(parts)
        # Offset of each text in `data` (and, last, one past the end of all): the running sum of
        # the lengths plus a separator per text before it, computed in C (map, accumulate).
        separators = range(0, _SEP_LEN * len(texts) + 1, _SEP_LEN)
        bases = list(map(add, accumulate(map(len, texts), initial=0), separators))
        scratches, literal_scratch = self._scratch()
        main_hits: list[tuple[int, int, int]] = []
        self._scan_anchors(data, main_hits, scratches)
        per_text: dict[int, list[tuple[int, int, int]]] = {}
        for rid, start, end in main_hits:
            i = bisect_right(bases, end - 1) - 1
            if end > bases[i + 1] - _SEP_LEN:  # past the text's end
                continue
            base = bases[i]
            hits = per_text.get(i)
            if hits is None:
                hits = per_text[i] = []
            hits.append((rid, start - base, end - base))
        if self.literal_db is not None:
            literal_hits: list[tuple[int, int, int]] = []
            self.literal_db.scan(
                data, match_event_handler=_on_match, context=literal_hits, scratch=literal_scratch
            )
            rids = self.literal_rids
            lower: dict[int, bool] = {}
            for lid, start, end in literal_hits:
                # `end - 1` is the end character (the text's own or the separator's space).
                i = bisect_right(bases, end - 2) - 1
                is_lower = lower.get(i)
                if is_lower is None:
                    is_lower = lower[i] = texts[i].islower()
                if is_lower:  # `find` skips the literal scan of all-lowercase text
                    continue
                base = bases[i]
                hits = per_text.get(i)
                if hits is None:
                    hits = per_text[i] = []
                hits.append((rids[lid], start - base, end - 1 - base))
        for i, hits in per_text.items():
            out[i] = self._confirm(texts[i], hits, allow)
        for i, (text, original) in enumerate(zip(texts, originals, strict=True)):
            if text is not original and (hidden := self._found_without_invisible(original, allow)):
                out[i] = [*out[i], *hidden]
        return out

    def _scan_anchors(
        self, data: bytes, hits: list[tuple[int, int, int]], scratches: tuple[Any, ...]
    ) -> None:
        """Reports of every anchor database in `data`, in end order as one database gives them
        (`_confirm` relies on it to skip a candidate inside the match just found)."""
        for db, scratch in zip(self.dbs, scratches, strict=True):
            db.scan(data, match_event_handler=_on_match, context=hits, scratch=scratch)
        if len(self.dbs) > 1:
            hits.sort(key=_END)

    def _found_without_invisible(self, text: str, allow: frozenset[str]) -> list[tuple[int, int, int]]:
        """Detections in `text` read with its invisible characters left out, as spans of `text`.
        Read as "-" (`_plain`), they keep a number's groups together but break what a hyphen
        cannot be part of: an address next to its "@" or a dot (`jane@example\u200b.com`, which
        pages write against autolinking, and copy and paste keeps), an IBAN's or an IP address's
        groups, a key's characters, a value followed by one. Only texts holding such a character
        are read twice; the same detection found both ways is kept once (`_resolve`)."""
        # Offsets in the text without them of each one left out (minus those before it): offset
        # v of that text is v + (how many of these are <= v) in `text`.
        gaps = [m.start() - k for k, m in enumerate(_INVISIBLE_RE.finditer(text))]
        if not gaps:
            return []
        found: list[tuple[int, int, int]] = []
        for start, neg_end, rid in self.find(_INVISIBLE_RE.sub("", text), allow):
            end = -neg_end
            found.append((start + bisect_right(gaps, start), -(end + bisect_right(gaps, end - 1)), rid))
        return found

    def _confirm(
        self, text: str, hits: list[tuple[int, int, int]], allow: frozenset[str]
    ) -> list[tuple[int, int, int]]:
        """The exact regex and validator at each reported candidate: (start, -end, rule index)."""
        rules = self.rules
        found: list[tuple[int, int, int]] = []
        seen: set[tuple[int, int]] = set()
        left_sets = self.left_sets
        # The last match found. Hits arrive in end order, so the digits of an IBAN or the
        # "415 555 0132" inside "+1 415 555 0132" come right after the match that covers
        # them: a hit starting strictly inside it would lose the overlap resolution anyway.
        cover_start = cover_end = -1
        for rid, start, end in hits:
            rule = rules[rid]
            if rule.locate is not None:
                pos = rule.locate(text, end)
                if pos is None:
                    continue
            elif (left := left_sets[rid]) is not None and (start or text[0] not in left):
                pos = start + 1  # skip the context character (-1: the separator of find_many)
            else:
                pos = start
            if cover_start < pos < cover_end:
                continue
            key = (rid, pos)
            if key in seen:  # the same start reported for several anchor ends
                continue
            seen.add(key)
            m = rule.exact.match(text, pos)
            if m is None:
                continue
            span = _checked_span(rule, m, allow)
            if span is None:
                continue
            found.append((span[0], -span[1], rid))
            cover_start, cover_end = span
        return found

    def _find_by_re(self, text: str, allow: frozenset[str], found: list[tuple[int, int, int]]) -> None:
        """Rules Hyperscan does not run (not installed, or a pattern it cannot compile)."""
        rules = self.rules
        has_digit: bool | None = None
        for rid in self.scan_rules:
            rule = rules[rid]
            if rule.literals:
                if not any(lit in text for lit in rule.literals):
                    continue
            elif rule.needs_digit:
                if has_digit is None:
                    has_digit = _DIGIT.search(text) is not None
                if not has_digit:
                    continue
            for m in rule.exact.finditer(text):
                span = _checked_span(rule, m, allow)
                if span is not None:
                    found.append((span[0], -span[1], rid))


def _checked_span(rule: Rule, m: re.Match[str], allow: frozenset[str]) -> tuple[int, int] | None:
    """The span to mask for an exact match: validated, not empty, not an allow-listed value."""
    span = rule.check(m)
    if span is None or span[0] >= span[1]:
        return None
    if allow and m.string[span[0] : span[1]] in allow:
        return None
    return span


# Joins the texts of one `find_many` scan. No anchor can run across it: the classes that take in a
# space exclude NUL and the one that takes in NUL (URL credentials' `[^\s:/@"'<>]`) excludes the
# space; the line-spanning anchors (closings) need a line break or `\x01\x01`. The space is a word
# end for the literal scan, the NUL is a non-word, non-left-context character like a text's start.
_SEPARATOR: Final = " \x00"
_SEPARATOR_BYTES: Final = _SEPARATOR.encode()
_SEP_LEN: Final = len(_SEPARATOR)
# `find_many`'s result for a text without reports, shared (read only).
_NO_HITS: Final[list[tuple[int, int, int]]] = []

# Characters that can follow a gazetteer word; '?' stands for any non-ASCII character, \x01 for a
# blanked JSON escape.
_WORD_ENDS: Final[tuple[bytes, ...]] = tuple(c.encode() for c in " ,.\n\r\t!?'\")]:;-\x01/")


_LITERAL_DATABASES: dict[tuple[bytes, ...], Any] = {}
_LITERAL_LOCK: Final = threading.Lock()


def _literal_database(words: tuple[bytes, ...]) -> Any:
    """A compiled literal database, shared by every masker of the process with the same words
    (a database is read-only while scanning, scratch is not) and kept on disk between processes
    (~80k literals compile in seconds; `hyperscan_cache`)."""
    with _LITERAL_LOCK:
        db = _LITERAL_DATABASES.get(words)
        if db is None:
            # One id per literal: with a shared id the literal compiler takes ~60x longer.
            db = compile_database(words, range(len(words)), 0, literal=True)
            _LITERAL_DATABASES[words] = db
        return db


def _anchor_database(anchored: list[tuple[int, tuple[bytes, ...], int]]) -> Any:
    """One database of every rule's anchors (None without any)."""
    expressions = [a for _, anchors, _ in anchored for a in anchors]
    if not expressions:
        return None
    ids = [rid for rid, anchors, _ in anchored for _ in anchors]
    flags = [f for _, anchors, f in anchored for _ in anchors]
    return compile_database(expressions, ids, flags)


def _ascii_class(body: str) -> frozenset[str]:
    cls = re.compile(f"[{body}]", re.ASCII)
    return frozenset(c for c in map(chr, range(128)) if cls.match(c))


def _hs_compiles(pattern: bytes, flags: int) -> bool:
    assert _hs is not None
    try:
        db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
        db.compile(expressions=[pattern], ids=[0], elements=1, flags=[flags])
    except _hs.error:
        return False
    return True


def _is_dirty(t: str, special: dict[str, str | tuple[str, ...] | None], found: dict[str, Any]) -> bool:
    """Whether the pre-scan found PII in `t` (`PiiMasker._prescan`: `special` maps a value to its
    probe where that is not the value itself, `found` holds the scanned texts with a detection).
    A module function, not a closure: a recursive closure is a reference cycle, which kept each
    batch's `found` and `special` alive until a full collection."""
    probe = special.get(t, t)
    if probe is t:
        return t in found
    if probe is None:  # the walk must tell
        return True
    if isinstance(probe, tuple):
        # A plain leaf is dirty if found; a leaf that is itself special (a JSON string in the
        # JSON) is never in `found` and is asked about on its own.
        return not found.keys().isdisjoint(probe) or (
            not special.keys().isdisjoint(probe) and any(_is_dirty(leaf, special, found) for leaf in probe)
        )
    return probe in found  # "" (inline data, not scanned) is never found


@mypyc_attr(allow_interpreted_subclasses=True)  # as `_Engine`
class PiiMasker:
    """Processor "pii": masks PII in inference messages, configured span/event/log attributes and
    log bodies, and records per-row counts in `pii_found` (inferences) / `PiiFound` (spans, logs).
    """

    name = "pii"

    def __init__(
        self, config: PiiConfig | None = None, tenant_keys: tuple[str, ...] = DEFAULT_TENANT_KEYS
    ) -> None:
        self.config = config or PiiConfig()
        cfg = self.config
        rules: list[Rule] = []
        for det in cfg.enabled_detectors():
            rules.extend(BUILTIN_RULES[det])
        for cp in cfg.custom_patterns:
            flags = re.ASCII | (re.IGNORECASE if cp.ignore_case else 0)
            anchors = (cp.regex.encode("ascii"),) if cp.regex.isascii() else ()
            rules.append(Rule(cp.name, anchors, re.compile(cp.regex, flags), _whole_match, (), False))
        self._rules = rules
        self._types = [r.pii_type for r in rules]
        self._engine = _Engine(rules)
        self._min_len = 6 if not cfg.custom_patterns else 1  # shortest built-in hit: "a@b.co"
        self._allow = frozenset(cfg.allow_list)
        self._mode = cfg.mode
        self._key = cfg.hash_key.encode("utf-8")
        self._hash_chars = cfg.hash_chars
        self._hash_cache: dict[tuple[str, str], str] = {}
        self._placeholders = {r.pii_type: f"<{r.pii_type}>" for r in rules}
        keys = list(DEFAULT_ATTRIBUTES if cfg.include_default_attributes else ()) + list(cfg.attributes)
        self._masked_keys = _KeyMatcher(keys)
        never = list(DEFAULT_NEVER_MASK if cfg.include_default_never_mask else ()) + list(cfg.never_mask)
        self._never_keys = _KeyMatcher(never)
        self._mask_all = cfg.mask_all_attributes
        self._mask_log_body = cfg.mask_log_body
        # An id column is masked when its attributes are configured to be ("user.id" in
        # `attributes`: a deployment whose user ids are emails), or the column would keep what the
        # spans' own copies no longer hold.
        configured = _KeyMatcher(cfg.attributes)
        id_sources = (("user_id", USER), ("session_id", SESSION), ("tenant_id", tenant_keys))
        id_columns = [
            column
            for column, sources in id_sources
            if column not in cfg.inference_fields and any(configured.matches(k) for k in sources)
        ]
        self._inference_fields = (*cfg.inference_fields, *id_columns)
        self._attr_min_len = max(self._min_len, 6)  # `_not_text`: shorter values are never text
        self._key_cache: dict[str, bool] = {}
        self._masked_layouts: dict[tuple[str, ...], tuple[str, ...]] = {}  # attribute keys -> masked ones
        # Shared attribute maps (the resource's, one dict for all spans of a request) are masked
        # once per batch; each row that carries one still counts what it held.
        self._shared_counts: dict[int, dict[str, int]] | None = None
        # Within one batch the same text is usually met twice (a span's content attribute and the
        # inference's message built from it): scanned once, counted for each row.
        self._memo: dict[str, tuple[str, dict[str, int]]] | None = None
        # What the batch's pre-scan (`_prescan`) found, while `process` runs.
        self._scanned: _BatchScan | None = None
        # One Hyperscan scan over all texts of a batch; not with custom patterns (a user's regex
        # might match across the separator).
        self._batch_scan = self._engine.batchable and not cfg.custom_patterns

    # --- text -------------------------------------------------------------------------------

    def detect(self, text: str) -> list[Detection]:
        """Non-overlapping detections, left to right, allow-listed values removed."""
        return [Detection(*d) for d in self._detect(text)]

    def _detect(self, text: str) -> list[tuple[int, int, str]]:
        # Plain tuples on the hot path: a NamedTuple costs ~0.4 µs more per detection.
        if len(text) < self._min_len:
            return []
        scanned = self._scanned  # read once: `process` resets it at the end of a batch
        if scanned is not None:
            known = scanned.found.get(text)
            if known is not None:
                return known
            if text in scanned.texts:
                return _NOTHING
        return self._resolve(self._engine.find(text, self._allow))

    def _resolve(self, found: list[tuple[int, int, int]]) -> list[tuple[int, int, str]]:
        """Engine matches (possibly overlapping) to detections."""
        if not found:
            return []
        types = self._types
        if len(found) == 1:
            start, neg_end, rid = found[0]
            return [(start, -neg_end, types[rid])]
        # Leftmost first, then longest, then rule priority (detector order in BUILTIN_RULES).
        found.sort()
        out: list[tuple[int, int, str]] = []
        last_end = -1
        for start, neg_end, rid in found:
            if start < last_end:
                continue
            out.append((start, -neg_end, types[rid]))
            last_end = -neg_end
        return out

    def mask_text(self, text: str) -> tuple[str, dict[str, int]]:
        """Masked text and counts by PII type ({} and the same object when nothing was found)."""
        detections = self._detect(text)
        if not detections:
            return text, {}
        return self._apply(text, detections)

    def _apply(self, text: str, detections: list[tuple[int, int, str]]) -> tuple[str, dict[str, int]]:
        counts: dict[str, int] = {}
        parts: list[str] = []
        pos = 0
        for start, end, pii_type in detections:
            parts.append(text[pos:start])
            parts.append(self._replacement(pii_type, text[start:end]))
            counts[pii_type] = counts.get(pii_type, 0) + 1
            pos = end
        parts.append(text[pos:])
        return "".join(parts), counts

    def _replacement(self, pii_type: str, value: str) -> str:
        if self._mode == "placeholder":
            return self._placeholders[pii_type]
        if self._mode == "drop":
            return ""
        # Keyed, truncated HMAC: stable across rows and restarts so equal values still join, but
        # not reversible by enumerating phone numbers without the key. Cached: the same user's
        # email or phone recurs in every message of a conversation.
        cache_key = (pii_type, value)
        token = self._hash_cache.get(cache_key)
        if token is None:
            msg = f"{pii_type}:{normalise_value(pii_type, value)}".encode()
            digest = hmac.digest(self._key, msg, "sha256").hex()[: self._hash_chars]
            token = f"<{pii_type}:{digest}>"
            if len(self._hash_cache) >= 16384:
                self._hash_cache.clear()
            self._hash_cache[cache_key] = token
        return token

    # --- structured values ------------------------------------------------------------------

    def mask_value(
        self, value: Any, counts: dict[str, int], skip_keys: frozenset[str] = frozenset(), depth: int = 0
    ) -> Any:
        """Masks every string leaf of a str/list/dict (dict keys in `skip_keys` are left as is).
        Returns the same object when nothing changed; adds to `counts`. Deeper than MAX_DEPTH
        raises TooDeep (the row is then redacted): no message format nests that far."""
        if isinstance(value, str):
            return self._mask_str(value, counts, skip_keys)
        if depth > MAX_DEPTH and isinstance(value, (list, dict)):
            raise TooDeep(f"structure nested deeper than {MAX_DEPTH}")
        if isinstance(value, list):
            changed = False
            new_list = []
            for item in value:
                new_item = self.mask_value(item, counts, skip_keys, depth + 1)
                changed = changed or new_item is not item
                new_list.append(new_item)
            return new_list if changed else value
        if isinstance(value, dict):
            new_dict = None
            for k, v in value.items():
                if k in skip_keys:
                    continue
                new_v = self.mask_value(v, counts, skip_keys, depth + 1)
                if new_v is not v:
                    if new_dict is None:
                        new_dict = dict(value)
                    new_dict[k] = new_v
            return value if new_dict is None else new_dict
        return value

    def _mask_str(self, s: str, counts: dict[str, int], json_skip_keys: frozenset[str]) -> str:
        if len(s) < self._min_len:
            return s
        scanned = self._scanned
        if (
            scanned is not None
            and json_skip_keys is MESSAGE_SKIP_KEYS
            and s in scanned.values
            and s not in scanned.dirty
        ):
            return s  # the batch's pre-scan (which skips these keys in JSON) found nothing in it
        memo = self._memo
        if memo is None or len(s) < _MEMO_MIN_LEN:
            return self._scan_str(s, counts, json_skip_keys)
        key = s if json_skip_keys is MESSAGE_SKIP_KEYS else None
        hit = memo.get(s) if key is not None else None
        if hit is not None:
            masked, found = hit
            if not found:
                # Nothing was masked: the caller's own object, not the equal one remembered (a
                # different object reads as a change and a JSON value would be re-serialised).
                return s
            for k, n in found.items():
                counts[k] = counts.get(k, 0) + n
            return masked
        found = {}
        masked = self._scan_str(s, found, json_skip_keys)
        for k, n in found.items():
            counts[k] = counts.get(k, 0) + n
        if key is not None:
            memo[key] = (masked, found)
        return masked

    def _scan_str(self, s: str, counts: dict[str, int], json_skip_keys: frozenset[str]) -> str:
        if s.startswith("data:") and _inline_data(s):
            return s  # inline images/audio: masking would corrupt them and they hold no text
        first = s[0]
        if first == "{" or first == "[":
            # A JSON value is masked leaf by leaf, as decoded: "Am\\u00e9lie" reads as a name only
            # then, and the leaves are mostly the message texts the inference row holds too, which
            # the batch scans once (`_probe`). Re-serialised only when something was masked.
            obj = _json_structure(s)
            if obj is not None:
                found: dict[str, int] = {}
                try:
                    masked = self.mask_value(obj, found, json_skip_keys)
                except TooDeep:
                    return self._mask_escaped_text(s, counts, must_parse=True)
                for k, n in found.items():
                    counts[k] = counts.get(k, 0) + n
                return s if masked is obj else _masked_json_text(s, obj, masked)
            if "\\" in s:
                # JSON that does not parse (cut by an SDK's attribute length limit): read with its
                # escapes decoded, as the leaves would have been.
                return self._mask_escaped_text(s, counts, must_parse=False)
        detections = self._detect(s)
        if not detections:
            return s
        masked_s, found = self._apply(s, detections)
        for k, n in found.items():
            counts[k] = counts.get(k, 0) + n
        return masked_s

    def _mask_escaped_text(self, s: str, counts: dict[str, int], must_parse: bool) -> str:
        """JSON text masked as text: a value nested deeper than the walk goes (OTLP arrays may nest
        97 levels), or one that does not parse. The scan reads it with its escapes decoded
        (`_json_text_view`: "Am\\u00e9lie" is a name, "regards,\\nAnna" a closing and a name on
        the next line), and each match is replaced where it stands in the text, escapes and all.
        `must_parse`: the text parsed before, so it must still parse after; if not (a match
        across the JSON's syntax), TooDeep: the row is redacted (`_guard`), never stored with
        the value half masked."""
        view = _json_text_view(s)
        detections = self._detect(view.text)
        if not detections:
            return s
        found: dict[str, int] = {}
        parts: list[str] = []
        pos = 0
        for start, end, pii_type in detections:
            original_start, original_end = view.original_span(start, end)
            parts.append(s[pos:original_start])
            parts.append(self._replacement(pii_type, view.text[start:end]))
            found[pii_type] = found.get(pii_type, 0) + 1
            pos = original_end
        parts.append(s[pos:])
        masked_s = "".join(parts)
        if must_parse:
            try:
                orjson.loads(masked_s)
            except orjson.JSONDecodeError:
                raise TooDeep("a deeply nested JSON value could not be masked as text") from None
        for k, n in found.items():
            counts[k] = counts.get(k, 0) + n
        return masked_s

    def key_masked(self, key: str) -> bool:
        """Whether an attribute's value is scanned: every key unless never-masked, or (with
        mask_all_attributes off) only the configured keys. `attributes` always win."""
        hit = self._key_cache.get(key)
        if hit is None:
            if self._masked_keys.matches(key):
                hit = True
            elif self._mask_all:
                hit = not self._never_keys.matches(key)
            else:
                hit = False
            if len(key) <= _MAX_CACHED_KEY:  # huge keys are not kept (8192 of them could be GBs)
                if len(self._key_cache) > 8192:  # attribute keys are few; this only bounds abuse
                    self._key_cache.clear()
                self._key_cache[key] = hit
        return hit

    def _masked_keys_of(self, attrs: dict[str, Any]) -> tuple[str, ...]:
        """The keys of `attrs` whose values are scanned, in order. The spans of one
        instrumentation carry the same keys in the same order, ~20-30 of them, mostly ids, enums
        and numbers: the answer is remembered per key layout."""
        layout = tuple(attrs)
        keys = self._masked_layouts.get(layout)
        if keys is None:
            keys = tuple(k for k in layout if isinstance(k, str) and self.key_masked(k))
            if len(layout) <= _MAX_CACHED_LAYOUT:  # a sender's thousands of keys are not kept
                if len(self._masked_layouts) > 4096:  # layouts are few; this only bounds abuse
                    self._masked_layouts.clear()
                self._masked_layouts[layout] = keys
        return keys

    def _mask_attributes(self, attrs: dict[str, Any], counts: dict[str, int]) -> None:
        scanned = self._scanned
        for key in self._masked_keys_of(attrs):
            value = attrs[key]
            if not isinstance(value, str):
                continue
            if scanned is not None and value in scanned.values and value not in scanned.dirty:
                continue  # what `_mask_str` would say, known before the `_not_text` regex
            if not _not_text(value):
                new = self._mask_str(value, counts, MESSAGE_SKIP_KEYS)
                if new is not value:
                    attrs[key] = new

    def _mask_shared_attributes(self, attrs: dict[str, Any], counts: dict[str, int]) -> None:
        shared = self._shared_counts
        if shared is None:
            self._mask_attributes(attrs, counts)
            return
        found = shared.get(id(attrs))
        if found is None:
            found = {}
            self._mask_attributes(attrs, found)
            shared[id(attrs)] = found
        for k, n in found.items():
            counts[k] = counts.get(k, 0) + n

    # --- processor --------------------------------------------------------------------------

    def process(self, batch: Batch) -> None:
        if not self.config.enabled:
            return
        self._memo = {}
        self._shared_counts = {}
        try:
            self._process(batch)
        finally:
            self._memo = None
            self._shared_counts = None
            self._scanned = None

    def _process(self, batch: Batch) -> None:
        # Counts of what the receiver already masked (INFERLINE_MASK_AT_RECEIVER), by span.
        carried: dict[str, dict[str, int]] = {}
        for row in batch.spans:
            attrs = row.get("SpanAttributes")
            if attrs and CARRIED_COUNTS in attrs and (c := _carried(attrs)):
                carried[row["SpanId"]] = c
        # Most rows hold nothing to mask: found by one scan of the whole batch, they are not walked.
        clean: AbstractSet[int] = _NO_ROWS
        if self._batch_scan:
            try:
                clean = self._prescan(batch)
            except Exception:
                # Not a reason to fail the batch: every row is walked and scanned on its own, and
                # `_guard` redacts the rows that fail there too.
                log.warning("pii: the batch pre-scan failed; scanning row by row", exc_info=True)
                self._scanned = None
        for row in batch.inferences:
            if id(row) in clean:
                row["pii_found"] = {}
            else:
                self._guard(row, "pii_found", self._process_inference, self._inference_fields)
            if carried:
                _add(row, "pii_found", carried.get(row.get("span_id", "")))
        for row in batch.spans:
            if id(row) in clean:
                row["PiiFound"] = {}
            else:
                self._guard(row, "PiiFound", self._process_span, _SPAN_FIELDS)
            if carried:
                _add(row, "PiiFound", carried.get(row.get("SpanId", "")))
        for row in batch.logs:
            if id(row) in clean:
                row["PiiFound"] = {}
            else:
                self._guard(row, "PiiFound", self._process_log, _LOG_FIELDS)
            attrs = row.get("LogAttributes")
            if attrs and CARRIED_COUNTS in attrs:
                _add(row, "PiiFound", _carried(attrs))
        for row in batch.scores:
            if id(row) in clean:
                row["pii_found"] = {}
            else:
                self._guard(row, "pii_found", self._process_score, _SCORE_FIELDS)

    # --- batch pre-scan ---------------------------------------------------------------------

    def _prescan(self, batch: Batch) -> set[int]:
        """Scans, in one Hyperscan pass, every text the row walk (`_process_*`) would scan, and
        keeps the detections for it (`_detect` looks them up). Returns the ids of the rows none of
        whose texts has a detection: the walk would leave them as they are, with no counts.

        Collecting mirrors the walk's choice of values (same keys, same not-text and length
        checks); a row whose collection fails (an unexpected shape, nesting past MAX_DEPTH) is
        simply walked, so `_guard` handles it as before."""
        # One flat list of values and an end offset per row (-1: walk it), not a list per row: a
        # few thousand containers alive for the whole batch would be promoted by the collector and
        # bring on full collections of the (large) heap every few batches.
        texts: list[str] = []
        row_ends: list[int] = []
        resources: dict[int, list[str]] = {}
        collectors: tuple[tuple[list[Row], Any], ...] = (
            (batch.inferences, self._collect_inference),
            (batch.spans, self._collect_span),
            (batch.logs, self._collect_log),
            (batch.scores, self._collect_score),
        )
        for batch_rows, collect in collectors:
            for row in batch_rows:
                start = len(texts)
                try:
                    collect(row, texts, resources)
                except Exception:  # walked instead; `_guard` redacts it if it fails there too
                    del texts[start:]
                    row_ends.append(-1)
                else:
                    row_ends.append(len(texts))
        # Each distinct value once (`dict.fromkeys` dedups in C), scanned as `_scan_str` would
        # scan it: most values as themselves; JSON values and inline data as `_probe` says (the
        # leaves of a JSON value masked leaf by leaf are values of their own, appended to the
        # list being iterated).
        values = dict.fromkeys(texts)
        special: dict[str, str | tuple[str, ...] | None] = {}  # value -> its probe, when not itself
        scan: dict[str, None] = {}
        pending = list(values)
        for t in pending:
            first = t[0]
            if first == "{" or first == "[" or first == "d":  # JSON, or maybe "data:..."
                probe = self._probe(t)
                if probe is not t:
                    special[t] = probe
                    if isinstance(probe, tuple):
                        for leaf in probe:
                            if leaf not in values:
                                values[leaf] = None
                                pending.append(leaf)
                    elif probe:
                        scan[probe] = None
                    continue
            scan[t] = None
        scan_list = list(scan)
        results = self._engine.find_many(scan_list, self._allow)
        # Only the few texts with a report are looked at in Python (compress/filter run in C).
        found = {
            text: self._resolve(hits)
            for text, hits in zip(compress(scan_list, results), filter(None, results), strict=True)
        }

        # A value is its own probe unless special, so the scanned texts with a detection are the
        # dirty values (a JSON value's probe in the set is harmless: no other value equals it
        # unless it is that very text, scanned and found as such).
        dirty = set(found)
        dirty.update(t for t in special if _is_dirty(t, special, found))
        self._scanned = _BatchScan(found, scan.keys(), values.keys(), dirty)
        # Dirty values among the first i collected (computed in C): a row is clean when the count
        # does not grow over its values (no slice of `texts` per row).
        dirty_before = list(accumulate(map(dirty.__contains__, texts), initial=0))
        clean: set[int] = set()
        ends = iter(row_ends)
        start = 0
        for batch_rows, _ in collectors:
            for row in batch_rows:
                end = next(ends)
                if end >= 0:
                    if dirty_before[end] == dirty_before[start]:
                        clean.add(id(row))
                    start = end
        return clean

    def _probe(self, s: str) -> str | tuple[str, ...] | None:
        """What `_scan_str` scans for `s`: `s` itself, `_SKIPPED` for inline data, the string
        leaves of a JSON object or array (masked leaf by leaf), or None when `s` must be walked to
        know (a parse the walk would fail)."""
        if s.startswith("data:") and _inline_data(s):
            return _SKIPPED
        first = s[0]
        if first == "{" or first == "[":
            obj = _json_structure(s)
            if obj is not None:
                leaves: list[str] = []
                try:
                    self._collect_value(obj, leaves)
                except TooDeep:  # deeper than the walk goes: text (`_mask_escaped_text`)
                    return _json_text_view(s).text
                except Exception:  # the walk must tell
                    return None
                return tuple(leaves)
            if "\\" in s:  # JSON that does not parse: its escapes decoded (`_mask_escaped_text`)
                return _json_text_view(s).text
        return s

    def _collect_value(self, value: Any, out: list[str], depth: int = 0) -> None:
        """The strings `mask_value(value, counts, MESSAGE_SKIP_KEYS)` scans."""
        min_len = self._min_len
        if isinstance(value, str):
            if len(value) >= min_len:
                out.append(value)
            return
        if depth > MAX_DEPTH and isinstance(value, (list, dict)):
            raise TooDeep(f"structure nested deeper than {MAX_DEPTH}")
        # String leaves inline, and the dicts of a list (the messages of a conversation) one level
        # inline too: most nodes are strings or messages, and a call each would double this.
        if isinstance(value, list):
            for item in value:
                if isinstance(item, str):
                    if len(item) >= min_len:
                        out.append(item)
                elif isinstance(item, dict) and depth < MAX_DEPTH:
                    for k, v in item.items():
                        if k in MESSAGE_SKIP_KEYS:
                            continue
                        if isinstance(v, str):
                            if len(v) >= min_len:
                                out.append(v)
                        else:
                            self._collect_value(v, out, depth + 2)
                else:
                    self._collect_value(item, out, depth + 1)
        elif isinstance(value, dict):
            for k, v in value.items():
                if k in MESSAGE_SKIP_KEYS:
                    continue
                if isinstance(v, str):
                    if len(v) >= min_len:
                        out.append(v)
                else:
                    self._collect_value(v, out, depth + 1)

    def _collect_attributes(self, attrs: dict[str, Any], out: list[str]) -> None:
        """The values `_mask_attributes` scans (its test, reordered: cheapest first)."""
        keys = self._masked_layouts.get(tuple(attrs))  # `_masked_keys_of`, its usual case inline
        if keys is None:
            keys = self._masked_keys_of(attrs)
        min_len = self._attr_min_len
        not_text = _NOT_TEXT.fullmatch
        for key in keys:
            value = attrs[key]
            if (
                isinstance(value, str)
                and len(value) >= min_len
                and (len(value) > 64 or not_text(value) is None)
            ):
                out.append(value)

    def _collect_inference(self, row: Row, out: list[str], _resources: dict[int, list[str]]) -> None:
        for f in self._inference_fields:
            value = row.get(f)
            if value:
                if isinstance(value, str):
                    if len(value) >= self._min_len:
                        out.append(value)
                else:
                    self._collect_value(value, out)

    def _collect_score(self, row: Row, out: list[str], _resources: dict[int, list[str]]) -> None:
        for f in _SCORE_FIELDS:
            value = row.get(f)
            if value:
                if not isinstance(value, str):
                    raise TypeError(f"{f} is not a string")  # the walk decides what happens
                self._collect_value(value, out)

    def _collect_span(self, row: Row, out: list[str], resources: dict[int, list[str]]) -> None:
        # `_span_attribute_maps`, inline (a generator per span costs more than the loop).
        attrs = row.get("SpanAttributes")
        if attrs:
            self._collect_attributes(attrs, out)
        for list_key in _ATTRIBUTE_MAP_LISTS:
            maps = row.get(list_key)
            if maps:
                for ev_attrs in maps:
                    if ev_attrs:
                        self._collect_attributes(ev_attrs, out)
        if self._mask_all:
            self._collect_common(row, out, resources, _SPAN_TEXTS)

    def _collect_log(self, row: Row, out: list[str], resources: dict[int, list[str]]) -> None:
        body = row.get("Body")
        if self._mask_log_body and isinstance(body, str) and body:
            self._collect_value(body, out)
        attrs = row.get("LogAttributes")
        if attrs:
            self._collect_attributes(attrs, out)
        if self._mask_all:
            self._collect_common(row, out, resources, _LOG_TEXTS)

    def _collect_common(
        self, row: Row, out: list[str], resources: dict[int, list[str]], text_keys: tuple[str, ...]
    ) -> None:
        """Resource and scope attributes and the row's free text (`text_keys`; only called when
        masking every value)."""
        for shared in (row.get("ResourceAttributes"), row.get("ScopeAttributes")):
            if shared:
                # One resource (scope) map is shared by the records of a request: collected once.
                texts = resources.get(id(shared))
                if texts is None:
                    texts = resources[id(shared)] = []
                    self._collect_attributes(shared, texts)
                out.extend(texts)
        for key in text_keys:
            text = row.get(key)
            if isinstance(text, str) and text:
                self._collect_value(text, out)
            elif isinstance(text, list):  # a list column: its events' names
                for item in text:
                    if isinstance(item, str) and item:
                        self._collect_value(item, out)

    def _guard(self, row: Row, count_col: str, fn: Any, fields: Iterable[str]) -> None:
        try:
            counts: dict[str, int] = {}
            fn(row, counts)
            row[count_col] = counts
        except Exception:
            # Fail closed: a row we could not scan must not reach storage with its content.
            log.warning("pii: could not scan a row; redacting its content fields", exc_info=True)
            for f in fields:
                value = row.get(f)
                if f in _ATTRIBUTE_MAPS and isinstance(value, dict):
                    row[f] = self._redact_attributes(value)
                elif f in _ATTRIBUTE_MAP_LISTS and isinstance(value, list):
                    row[f] = [self._redact_attributes(a) if isinstance(a, dict) else a for a in value]
                elif f in row:
                    row[f] = _redacted_like(value)
            row[count_col] = {ERROR_KEY: 1}

    def _redact_attributes(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Only the content attributes: model, token counts and ids stay queryable.
        return {k: (REDACTED if isinstance(v, str) and self.key_masked(k) else v) for k, v in attrs.items()}

    def _process_inference(self, row: Row, counts: dict[str, int]) -> None:
        for f in self._inference_fields:
            value = row.get(f)
            if value:
                new = self.mask_value(value, counts, MESSAGE_SKIP_KEYS)
                if new is not value:
                    row[f] = new

    def _process_score(self, row: Row, counts: dict[str, int]) -> None:
        for f in _SCORE_FIELDS:
            value = row.get(f)
            if value:
                row[f] = self._mask_str(value, counts, MESSAGE_SKIP_KEYS)

    def _process_span(self, row: Row, counts: dict[str, int]) -> None:
        for attrs in _span_attribute_maps(row):
            self._mask_attributes(attrs, counts)
        self._process_common(row, counts, _SPAN_TEXTS)

    def _process_log(self, row: Row, counts: dict[str, int]) -> None:
        body = row.get("Body")
        if self.config.mask_log_body and isinstance(body, str) and body:
            row["Body"] = self._mask_str(body, counts, MESSAGE_SKIP_KEYS)
        attrs = row.get("LogAttributes")
        if attrs:
            self._mask_attributes(attrs, counts)
        self._process_common(row, counts, _LOG_TEXTS)

    def _process_common(self, row: Row, counts: dict[str, int], text_keys: tuple[str, ...]) -> None:
        """Resource and scope attributes and the row's free text (`text_keys`), when masking every
        value."""
        if not self._mask_all:
            return
        for shared in (row.get("ResourceAttributes"), row.get("ScopeAttributes")):
            if shared:
                self._mask_shared_attributes(shared, counts)
        for key in text_keys:
            text = row.get(key)
            if isinstance(text, str) and text:
                row[key] = self._mask_str(text, counts, MESSAGE_SKIP_KEYS)
            elif isinstance(text, list):
                row[key] = [
                    self._mask_str(t, counts, MESSAGE_SKIP_KEYS) if isinstance(t, str) and t else t
                    for t in text
                ]


_ATTRIBUTE_MAPS: Final = ("SpanAttributes", "LogAttributes", "ResourceAttributes", "ScopeAttributes")
_ATTRIBUTE_MAP_LISTS: Final = ("Events.Attributes", "Links.Attributes")
# A record's free text besides its attributes: a span's status message and its name (semantic
# conventions ask for low-cardinality names, but "GET /users/jane@example.com" is what some
# applications send), and the names applications give events ("reminder sent to jane@…"): a
# span's events' (a list column) and a log record's; and the schema URLs a log row keeps (a URL
# may carry credentials or an address in its path or query).
_SPAN_TEXTS: Final = ("StatusMessage", "SpanName", "Events.Name")
_LOG_TEXTS: Final = ("EventName", "ResourceSchemaUrl", "ScopeSchemaUrl")
_SPAN_FIELDS: Final = (
    "SpanName",
    "Events.Name",
    "SpanAttributes",
    "Events.Attributes",
    "Links.Attributes",
    "ResourceAttributes",
    "StatusMessage",
)


def _span_attribute_maps(row: Row) -> Iterator[dict[str, Any]]:
    """A span's attribute maps in the order they are masked: its own, then its events' and links'."""
    attrs = row.get("SpanAttributes")
    if attrs:
        yield attrs
    for list_key in _ATTRIBUTE_MAP_LISTS:
        for ev_attrs in row.get(list_key) or ():
            if ev_attrs:
                yield ev_attrs


_LOG_FIELDS: Final = (
    "Body",
    "LogAttributes",
    "ResourceAttributes",
    "ScopeAttributes",
    "EventName",
    "ResourceSchemaUrl",
    "ScopeSchemaUrl",
)
# Text of an evaluation result a sender wrote (a judge's explanation quotes the call it judged; a
# label or a name is free text too).
_SCORE_FIELDS: Final = ("explanation", "metadata", "label", "name", "identifier", "evaluator")


class _KeyMatcher:
    """Exact attribute keys plus fnmatch globs compiled into one regex."""

    def __init__(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        self.exact = frozenset(k for k in keys if not any(c in k for c in "*?["))
        globs = [fnmatch.translate(k) for k in keys if any(c in k for c in "*?[")]
        self.glob = re.compile("|".join(globs)) if globs else None

    def matches(self, key: str) -> bool:
        return key in self.exact or (self.glob is not None and self.glob.match(key) is not None)


# Values that are obviously not text are not scanned: short numbers, hex ids (trace/span ids,
# hashes: with a letter, since a 13-19 digit run may be a card number), UUIDs.
_NOT_TEXT: Final = re.compile(
    r"(?:\d{1,12}|(?=[0-9]*[a-fA-F])[0-9a-fA-F]{16,64}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|-?\d+\.\d+|true|false|null)",
    re.ASCII,
)


def _not_text(value: str) -> bool:
    return len(value) < 6 or (len(value) <= 64 and _NOT_TEXT.fullmatch(value) is not None)


# Shorter texts cost less to scan than to remember.
_MEMO_MIN_LEN: Final = 64

# The attribute the receiver sets on a record it masked: {"EMAIL": 1, ...} as JSON.
CARRIED_COUNTS: Final = "inferline.pii_found"


# `_prescan` results: no row is known clean (no batch scan); a scanned text without detections; a
# value not scanned at all (inline base64 data).
_NO_ROWS: Final[frozenset[int]] = frozenset()
_NOTHING: Final[list[tuple[int, int, str]]] = []
_SKIPPED: Final = ""


def _carried(attrs: dict[str, str] | None) -> dict[str, int] | None:
    raw = attrs.get(CARRIED_COUNTS) if attrs else None
    if not raw:
        return None
    try:
        counts = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(counts, dict):
        return None
    # A sender can set this attribute too: only names a detector can have are counted (a forged
    # {"jane@example.com": 1} would put the address into PiiFound's keys).
    return {
        k: v
        for k, v in counts.items()
        if _TYPE_NAME.fullmatch(k) and isinstance(v, int) and not isinstance(v, bool) and v > 0
    }


_TYPE_NAME: Final = re.compile(r"[A-Z][A-Z0-9_]{0,63}")  # detector and custom pattern names (upper-cased)


def _add(row: Row, column: str, counts: dict[str, int] | None) -> None:
    if counts:
        found = dict(row.get(column) or {})
        for kind, n in counts.items():
            found[kind] = found.get(kind, 0) + n
        row[column] = found


def _inline_data(s: str) -> bool:
    """A `data:…;base64,` URL whose payload is base64 (an image, audio): not text, never masked.
    Anything else after the prefix ("data:text/plain;base64, mail jane@…") is scanned."""
    head = s.find(";base64,", 5, 100)
    return head >= 0 and _BASE64.fullmatch(s, head + 8) is not None


_BASE64: Final = re.compile(r"[A-Za-z0-9+/=_\-\r\n]*")


def _json_structure(s: str) -> dict[str, Any] | list[Any] | None:
    """`s` parsed, if it is a JSON object or array (`s` starts with "{" or "[")."""
    if s[-1] not in "}]":
        return None
    try:
        obj = orjson.loads(s)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, (dict, list)) else None


class _TextView(NamedTuple):
    """JSON text with its escapes decoded, and where each piece of it stands in the text: runs of
    plain characters (`units` 0) and escapes (`units`: the escape's length), one decoded character
    each."""

    text: str
    starts: list[int]  # where each piece starts in `text`
    original_starts: list[int]  # ... and in the JSON text
    units: list[int]

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The JSON text's span of `text[start:end]` (escapes whole)."""
        k = bisect_right(self.starts, start) - 1
        original_start = self.original_starts[k] + (0 if self.units[k] else start - self.starts[k])
        k = bisect_right(self.starts, end - 1) - 1
        original_end = self.original_starts[k] + (self.units[k] or end - self.starts[k])
        return original_start, original_end


_SHORT_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


def _json_text_view(s: str) -> _TextView:
    parts: list[str] = []
    starts: list[int] = []
    original_starts: list[int] = []
    units: list[int] = []
    at = last = 0
    for m in _JSON_ESCAPE.finditer(s):
        a, b = m.span()
        if a > last:
            parts.append(s[last:a])
            starts.append(at)
            original_starts.append(last)
            units.append(0)
            at += a - last
        escape = m.group()
        c = escape[1]
        parts.append(chr(int(escape[2:], 16)) if len(escape) == 6 else _SHORT_ESCAPES.get(c, c))
        starts.append(at)
        original_starts.append(a)
        units.append(b - a)
        at += 1
        last = b
    if last < len(s) or not parts:
        parts.append(s[last:])
        starts.append(at)
        original_starts.append(last)
        units.append(0)
    return _TextView("".join(parts), starts, original_starts, units)


def _masked_json_text(text: str, before: Any, after: Any) -> str:
    """`text` (the JSON of `before`) with each masked string value replaced where it stands, so
    the sender's formatting and escapes stay (`after` is `before` with some string leaves
    masked). Each old leaf is looked for as orjson writes it and as `json.dumps` does by default
    (non-ASCII as \\u escapes); when one is not found, or the result does not read back as
    `after` (the same text as a key, say), `after` is serialised anew."""
    for old, new in _changed_leaves(before, after):
        for encode in (_json_utf8, _json_ascii):
            written = encode(old)
            if written in text:
                text = text.replace(written, encode(new))
                break
        else:
            return orjson.dumps(after).decode()
    try:
        same = orjson.loads(text) == after
    except orjson.JSONDecodeError:
        same = False
    return text if same else orjson.dumps(after).decode()


def _changed_leaves(before: Any, after: Any) -> Iterator[tuple[str, str]]:
    """(old, new) for each string leaf `mask_value` replaced (it returns unchanged parts as the
    same objects, so identity tells)."""
    if before is after:
        return
    if isinstance(before, str):
        yield before, after
    elif isinstance(before, list):
        for b, a in zip(before, after, strict=True):
            yield from _changed_leaves(b, a)
    elif isinstance(before, dict):
        for k, b in before.items():
            yield from _changed_leaves(b, after[k])


def _json_utf8(s: str) -> str:
    return orjson.dumps(s).decode()


def _json_ascii(s: str) -> str:
    return json.dumps(s)


def _redacted_like(value: Any, depth: int = 0) -> Any:
    """Same container shape as `value`, every string replaced, so the row still inserts; past
    MAX_DEPTH the whole branch becomes one placeholder string."""
    if isinstance(value, str):
        return REDACTED
    if isinstance(value, (list, dict)) and depth > MAX_DEPTH:
        return REDACTED
    if isinstance(value, list):
        return [_redacted_like(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: (v if k in MESSAGE_SKIP_KEYS else _redacted_like(v, depth + 1)) for k, v in value.items()}
    return value
