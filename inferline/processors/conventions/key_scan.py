"""The one pass over a span's attribute keys that gathers indexed messages and prefixed metadata.

OpenInference and OpenLLMetry flatten message lists into `<prefix><i>.<sub>` keys; OpenLLMetry, the
AI SDK, Langfuse and LangSmith put free-form metadata under a key prefix.
"""

from __future__ import annotations

import re
from typing import Any

from inferline.processors.conventions import langfuse, langsmith, openinference, openllmetry, vercel_ai

# Prefixes gathered in the one pass over attribute keys. Indexed ones hold `<prefix><i>.<sub>`.
_INDEXED = (
    openinference.INPUT_PREFIX,
    openinference.OUTPUT_PREFIX,
    openinference.PROMPTS_PREFIX,
    openinference.CHOICES_PREFIX,
    openinference.TOOLS_PREFIX,
    openllmetry.PROMPT_PREFIX,
    openllmetry.COMPLETION_PREFIX,
)
_TAGGED = (
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


_SCAN_RX = re.compile(_pattern(_INDEXED + _TAGGED))
_TAGGED_SET = frozenset(_TAGGED)

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
            if i.isdigit():
                by_index = indexed.get(p)
                if by_index is None:
                    by_index = indexed[p] = {}
                entry = by_index.get(int(i))
                if entry is None:
                    entry = by_index[int(i)] = {}
                entry[sub] = v
    return indexed, tagged
