"""The model calls the normaliser made rows of within the join window: which record (request) each
came in, its token counts, and its parent. Two kinds of span would otherwise be counted twice by
the rollups, which count every version-1 row they are given (the table collapses copies of one
row; the views cannot):

- a *retry*: the same span in another record (an exporter that timed out and sent again);
- a *wrapper*: a model-call span whose direct parent or child is a model call with the same token
  counts (LangChain's `ChatOpenAI` span around the OpenAI instrumentor's span of the same call,
  both `LLM` spans with the same usage). The call seen first keeps its row.

A record read again (a batch rerun entry by entry, a replay) is the same record: not a retry.

The memory's clock is when the records were received (unix s, only ever moving forward), not
when they are processed: a call is remembered for the window after the latest receive time seen
when it made its row. Worked through with a backlog (a burst the local log absorbed, a consumer
catching up), a retry is still recognised, and `complete_after` still reaches back a window
from the records at hand. Forgetting and vouching read the same clock, which keeps vouching
right whatever the clock's relation to the wall clock.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

from inferline.processors.conventions.content_join import JoinKey

Tokens = tuple[int, int]  # (input, output)


class _Call(NamedTuple):
    origin: Any  # the record the span came in (topic, partition, offset)
    deadline: float
    tokens: Tokens
    parent: JoinKey


class CallMemory:
    def __init__(self, window_s: float, max_calls: int, now: float = 0.0) -> None:
        self.window_s = window_s
        self.max_calls = max_calls
        # Every call remembered after this moment is still here until its deadline: what was
        # remembered before it may be gone early (the memory was full, or is new since `now`).
        self._complete_after = now
        self._remembered_any = False
        self._calls: OrderedDict[JoinKey, _Call] = OrderedDict()
        self._children: dict[JoinKey, list[Tokens]] = {}  # parent -> its remembered calls' tokens

    def repeated(self, key: JoinKey, origin: Any) -> bool:
        """The span made a row from another record within the window (None: origin unknown)."""
        if origin is None:
            return False
        seen = self._calls.get(key)
        return seen is not None and seen.origin is not None and seen.origin != origin

    def nested(self, key: JoinKey, parent: JoinKey, tokens: Tokens) -> bool:
        """A direct parent or child of this call is a remembered call with the same counts."""
        if tokens == (0, 0):
            return False  # no usage: nothing to count twice, and no evidence it is one call
        above = self._calls.get(parent)
        if above is not None and above.tokens == tokens:
            return True
        return tokens in self._children.get(key, ())

    def remember(self, key: JoinKey, parent: JoinKey, origin: Any, tokens: Tokens, now: float) -> None:
        calls = self._calls
        self._remembered_any = True
        if key in calls:
            self._forget(key)
        # Built without the NamedTuple's Python `__new__` (one per model call, on the hot path).
        calls[key] = tuple.__new__(_Call, (origin, now + self.window_s, tokens, parent))
        if parent[2] and tokens != (0, 0):  # only a call with a parent and usage can be a wrapper's
            self._children.setdefault(parent, []).append(tokens)

    def forget_origins(self, origins: set[Any]) -> None:
        """Forgets the calls that came in these records (rare: a failed entry)."""
        for key in [k for k, call in self._calls.items() if call.origin in origins]:
            self._forget(key)

    def assume_complete_after(self, since: float) -> None:
        """Every call that made a row before this memory was new started no later than `since`
        (read from the store when it holds nothing newer): the memory is complete from `since`
        rather than from its start. Ignored once a call was remembered (one it forgot early must
        not be vouched for)."""
        if not self._remembered_any:
            self._complete_after = min(self._complete_after, since)

    def complete_after(self, now: float) -> float:
        """The moment from which every call that made a row is remembered, at the memory's time
        `now`: a call first seen now that started after it made no row before (its retry would
        have been recognised)."""
        return max(self._complete_after, now - self.window_s)

    def expire(self, now: float) -> None:
        calls = self._calls
        while calls:
            key, oldest = next(iter(calls.items()))
            if oldest.deadline > now:
                if len(calls) <= self.max_calls:
                    break
                # Forgotten before its window ends: a retry of it would not be recognised.
                self._complete_after = max(self._complete_after, oldest.deadline - self.window_s)
            self._forget(key)

    def _forget(self, key: JoinKey) -> None:
        call = self._calls.pop(key)
        siblings = self._children.get(call.parent)
        if siblings is not None and call.tokens in siblings:
            siblings.remove(call.tokens)
            if not siblings:
                del self._children[call.parent]
