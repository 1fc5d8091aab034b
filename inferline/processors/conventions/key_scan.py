"""The one pass over a span's attribute keys that gathers indexed messages and prefixed metadata.

OpenInference and OpenLLMetry flatten message lists into `<prefix><i>.<sub>` keys; OpenLLMetry, the
AI SDK, Langfuse and LangSmith put free-form metadata under a key prefix.
"""

from __future__ import annotations

import re
from typing import Any, Final, NamedTuple

from inferline.processors.conventions import langfuse, langsmith, openinference, openllmetry, vercel_ai
from inferline.processors.conventions.field_sources import Chains
from inferline.processors.conventions.values import key_index

# Prefixes gathered in the one pass over attribute keys. Indexed ones hold `<prefix><i>.<sub>`.
_INDEXED: Final = (
    openinference.INPUT_PREFIX,
    openinference.OUTPUT_PREFIX,
    openinference.PROMPTS_PREFIX,
    openinference.CHOICES_PREFIX,
    openinference.TOOLS_PREFIX,
    openllmetry.PROMPT_PREFIX,
    openllmetry.COMPLETION_PREFIX,
)
_TAGGED: Final = (
    openllmetry.ASSOCIATION_PREFIX,
    vercel_ai.METADATA_PREFIX,
    langfuse.TRACE_METADATA_PREFIX,
    langfuse.OBSERVATION_METADATA_PREFIX,
    langsmith.METADATA_PREFIX,
)


def _pattern(prefixes: tuple[str, ...]) -> str:
    """A newline, then (prefix)(rest of the key). Prefixes are grouped by their first segment so the
    engine tries one branch per key, not every prefix (none is a prefix of another: same matches)."""
    by_head: dict[str, list[str]] = {}
    for p in prefixes:
        head, _, tail = p.partition(".")
        by_head.setdefault(head, []).append(tail)
    branches = (
        re.escape(head + ".") + "(?:" + "|".join(re.escape(t) for t in tails) + ")"
        for head, tails in by_head.items()
    )
    return "\n((?:" + "|".join(branches) + "))([^\n]*)"


_SCAN_RX: Final = re.compile(_pattern(_INDEXED + _TAGGED))
_TAGGED_SET: Final = frozenset(_TAGGED)

# {prefix: {index: {sub_key: value}}} for the indexed message families
Indexed = dict[str, dict[int, dict[str, Any]]]
# (prefix, key after the prefix, value) of prefixed metadata attributes
Tagged = list[tuple[str, str, Any]]


def scan(a: dict[str, Any]) -> tuple[Indexed, Tagged]:
    """Indexed content (`<prefix><i>.<sub>` -> {prefix: {i: {sub: v}}}) and prefixed metadata.

    One regex pass over the joined keys finds the few keys of interest (and their prefix), so spans
    without such keys never run a per-key Python loop.
    """
    indexed: Indexed = {}
    tagged: Tagged = []
    for m in _SCAN_RX.finditer("\n" + "\n".join(a)):
        p, rest = m.group(1, 2)
        v = a.get(p + rest)
        if v is None:
            continue
        if p in _TAGGED_SET:
            tagged.append((p, rest, v))
        else:
            i, _, sub = rest.partition(".")
            index = key_index(i)
            if index is not None:
                by_index = indexed.get(p)
                if by_index is None:
                    by_index = indexed[p] = {}
                entry = by_index.get(index)
                if entry is None:
                    entry = by_index[index] = {}
                entry[sub] = v
    return indexed, tagged


class _Match(NamedTuple):
    """One key the scan pattern picks out of a key layout, with what `scan` derives from the key."""

    prefix: str
    rest: str  # the key after the prefix
    key: str  # prefix + rest: where the value is read
    number: int  # `<i>` of an indexed key; -1 for prefixed metadata
    sub: str  # what follows `<i>.` in an indexed key


class KeyLayout:
    """What depends only on a span's attribute keys, in their order, worked out once per distinct key
    tuple. Spans of one instrumentation share their key set (an export holds few layouts), so per
    span only the values are read: the scan pattern's matches, and the priority chains cut down to
    the keys present (an absent key reads None: cutting it cannot change which source wins).
    """

    __slots__ = ("_chains", "keys", "matches")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = frozenset(keys)
        # Chains compare by identity: a normaliser holds a few of them for its whole life
        self._chains: dict[Chains, Chains] = {}
        matches: list[_Match] = []
        for m in _SCAN_RX.finditer("\n" + "\n".join(keys)):
            p, rest = m.group(1, 2)
            if p in _TAGGED_SET:
                matches.append(_Match(p, rest, p + rest, -1, ""))
                continue
            i, _, sub = rest.partition(".")
            index = key_index(i)
            if index is None:
                continue  # `scan` skips it
            matches.append(_Match(p, rest, p + rest, index, sub))
        self.matches: tuple[_Match, ...] = tuple(matches)

    def scan(self, a: dict[str, Any]) -> tuple[Indexed, Tagged]:
        """`scan(a)` for a span with this layout, without the pass over its keys."""
        indexed: Indexed = {}
        tagged: Tagged = []
        for p, rest, key, index, sub in self.matches:
            v = a.get(key)
            if v is None:
                continue
            if index < 0:
                tagged.append((p, rest, v))
            else:
                by_index = indexed.get(p)
                if by_index is None:
                    by_index = indexed[p] = {}
                entry = by_index.get(index)
                if entry is None:
                    entry = by_index[index] = {}
                entry[sub] = v
        return indexed, tagged

    def chains(self, chains: Chains) -> Chains:
        """`chains` without the keys this layout lacks."""
        cut = self._chains.get(chains)
        if cut is None:
            cut = self._chains[chains] = chains.only(self.keys)
        return cut
