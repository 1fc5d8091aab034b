"""Joining message content from log records to the rows of the spans they belong to.

Content can arrive as log records (OTel <=1.36 per-message events, >=1.37
`gen_ai.client.inference.operation.details`) before, with or after the span. Logs that come first
wait for their span; rows still missing content are remembered so that later logs produce an updated
row with a higher `version` (the table is a ReplacingMergeTree(version)). Both caches keep entries for
the join window and hold at most `max_entries` each, dropping the oldest.

In the Kafka processor every cached entry also remembers the Kafka offsets of the records it was built
from (`Span.origin`, `LogRecord.origin`): pending content its log records, a remembered row its span and
the logs merged into it. `held_offsets()` gives the lowest such offset per partition, and the processor
commits no further, so a restart (or a partition moving) replays what only lived in this memory.
"""

from __future__ import annotations

import heapq
import pickle
from collections import OrderedDict
from collections.abc import Iterable, KeysView
from typing import Any

from inferline.core.records import LogRecord, Row
from inferline.processors.conventions.messages import Message
from inferline.processors.conventions.otel_genai import CONTENT_EVENTS, EventContent

# (project_id, trace_id, span_id)
JoinKey = tuple[str, str, str]
# (topic, partition)
Partition = tuple[str, int]
# The lowest offset per partition of the records one cached entry was built from; None: none known.
Origins = dict[Partition, int] | None


def add_log(batch: dict[JoinKey, EventContent], log: LogRecord) -> JoinKey | None:
    """Gather a content log record into `batch` under its span; other records are ignored (None)."""
    name: Any = log.event_name
    if not name:
        name = log.attributes.get("event.name")
    if type(name) is not str or name not in CONTENT_EVENTS:
        return None
    if not log.trace_id or not log.span_id:
        return None
    key = (log.project_id, log.trace_id, log.span_id)
    ev = batch.get(key)
    if ev is None:
        ev = batch[key] = EventContent()
    ev.add(name, log.body, log.attributes)
    return key


def add_origin(origins: Origins, origin: tuple[str, int, int]) -> dict[Partition, int]:
    """`origins` (a new dict when None) with `origin` (topic, partition, offset) folded in."""
    topic, partition, offset = origin
    if origins is None:
        return {(topic, partition): offset}
    tp = (topic, partition)
    cur = origins.get(tp)
    if cur is None or offset < cur:
        origins[tp] = offset
    return origins


def merge_origins(into: Origins, other: Origins) -> Origins:
    if not other:
        return into
    if not into:
        return dict(other)
    for tp, offset in other.items():
        cur = into.get(tp)
        if cur is None or offset < cur:
            into[tp] = offset
    return into


class OffsetHolds:
    """Reference counts of held offsets per partition, with a lazily pruned min-heap each: hold and
    release are O(log n), the minimum is amortised O(1)."""

    __slots__ = ("_counts", "_heaps")

    def __init__(self) -> None:
        self._counts: dict[Partition, dict[int, int]] = {}
        self._heaps: dict[Partition, list[int]] = {}

    def hold(self, origins: dict[Partition, int]) -> None:
        for tp, offset in origins.items():
            counts = self._counts.get(tp)
            if counts is None:
                counts = self._counts[tp] = {}
                self._heaps[tp] = []
            n = counts.get(offset)
            if n is None:
                counts[offset] = 1
                heap = self._heaps[tp]
                heapq.heappush(heap, offset)
                if len(heap) > 2 * len(counts) + 64:  # too many released entries below the top
                    heap[:] = counts
                    heapq.heapify(heap)
            else:
                counts[offset] = n + 1

    def release(self, origins: dict[Partition, int]) -> None:
        for tp, offset in origins.items():
            counts = self._counts[tp]
            n = counts[offset] - 1
            if n:
                counts[offset] = n
            else:
                del counts[offset]

    def minimum(self) -> dict[Partition, int]:
        out: dict[Partition, int] = {}
        for tp, heap in self._heaps.items():
            counts = self._counts[tp]
            if not counts:
                heap.clear()
                continue
            while heap[0] not in counts:
                heapq.heappop(heap)
            out[tp] = heap[0]
        return out


def _copy_msgs(msgs: list[Message]) -> list[Message]:
    out = []
    for m in msgs:
        c = dict(m)
        if "tool_calls" in c:
            c["tool_calls"] = [dict(t) for t in c["tool_calls"]]
        out.append(c)
    return out


def copy_row(row: Row) -> Row:
    """A copy safe from later stages that mutate rows in place (masking, pricing)."""
    r = dict(row)
    r["prompt_messages"] = _copy_msgs(row["prompt_messages"])
    r["response_messages"] = _copy_msgs(row["response_messages"])
    r["finish_reasons"] = list(row["finish_reasons"])
    r["tags"] = dict(row["tags"])
    r["usage_details"] = dict(row["usage_details"])
    r["request_parameters"] = dict(row["request_parameters"])
    r["labels"] = list(row["labels"])
    return r


# The span's own fallbacks for prompt, response and finish reasons (`row_messages`).
Weak = tuple[list[Message], list[Message], list[str]]


class EmittedRow:
    """A row still missing content, kept so that later logs can complete it.

    `strong` says which of prompt, response and finish reasons came from the span itself (those never
    change); `weak` holds the span's fallbacks, used while the logs bring nothing better.

    Once the join remembers it, the row and its fallbacks are kept pickled (`pack`): ~3 KB instead of
    ~10 KB of dicts and strings for a row with ~2 KB of content, and a worker holds thousands of them
    for the join window while few are ever read again (late logs, a late ancestor). Pickling one
    costs ~7 µs; reading it back (~12 µs) only happens when something completes it.
    """

    __slots__ = (
        "_packed",
        "_row",
        "_weak",
        "deadline",
        "events",
        "origins",
        "strong_finish",
        "strong_prompt",
        "strong_response",
    )

    def __init__(
        self,
        row: Row,
        strong: tuple[bool, bool, bool],
        events: EventContent,
        weak: Weak,
    ) -> None:
        self.deadline = 0.0  # set when the join remembers it
        self.origins: Origins = None  # set when the join remembers it
        self._row: Row | None = row
        self._weak: Weak | None = weak
        self._packed: bytes | None = None
        self.strong_prompt, self.strong_response, self.strong_finish = strong
        self.events = events

    @property
    def row(self) -> Row:
        """The row as last emitted (a private copy when packed: changing it changes nothing kept)."""
        return self._unpacked()[0]

    def _unpacked(self) -> tuple[Row, Weak]:
        if self._row is not None and self._weak is not None:
            return self._row, self._weak
        assert self._packed is not None
        row, weak = pickle.loads(self._packed)
        return row, weak

    def pack(self) -> None:
        """Keep the row and fallbacks pickled from now on (a value pickle refuses: kept as they are)."""
        if self._row is not None and self._weak is not None:
            try:
                self._packed = pickle.dumps((self._row, self._weak), pickle.HIGHEST_PROTOCOL)
            except Exception:
                return
            self._row = self._weak = None

    def _keep(self, row: Row, weak: Weak) -> Row:
        """Keeps `row` as the latest version; returns a copy for the caller (the stages after the
        normaliser rewrite rows in place, and the row may share messages with `events`)."""
        if self._packed is None:
            self._row = row
        else:
            self._packed = pickle.dumps((row, weak), pickle.HIGHEST_PROTOCOL)
        return copy_row(row)

    def updated(self, events: EventContent) -> Row:
        """The row with `events` merged in, at version + 1 (a copy; the new row is kept)."""
        self.events.merge(events)
        kept, weak = self._unpacked()
        row = dict(kept)
        ev = self.events
        if not self.strong_prompt:
            row["prompt_messages"] = ev.prompt_messages() or weak[0]
        if not self.strong_response:
            row["response_messages"] = ev.response_messages() or weak[1]
        if not self.strong_finish:
            row["finish_reasons"] = ev.finish_reasons() or weak[2]
        row["version"] = kept["version"] + 1
        return self._keep(row, weak)

    def reattributed(self, fields: dict[str, Any]) -> Row:
        """The row with attribution `fields` from ancestor spans, at version + 1 (a copy; the new row
        is kept, so later content and later ancestors build on it)."""
        kept, weak = self._unpacked()
        row = dict(kept)
        row.update(fields)
        row["version"] = kept["version"] + 1
        return self._keep(row, weak)


class ContentJoin:
    """Log content waiting for its span, and emitted rows waiting for late log content.

    Not thread-safe. Insertion order is deadline order (deadlines are set on insert, never extended in
    place), so expiry and eviction both take from the front. An entry's origins are held exactly while
    the entry is cached.
    """

    __slots__ = ("_emitted", "_holds", "_pending", "max_entries", "window_s")

    def __init__(self, window_s: float, max_entries: int) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        # key -> (deadline, content, origins)
        # OrderedDicts: expiry and eviction take from the front, O(1) here, O(n) on a dict
        # whose front entries were deleted (see Ancestry).
        self._pending: OrderedDict[JoinKey, tuple[float, EventContent, Origins]] = OrderedDict()
        self._emitted: OrderedDict[JoinKey, EmittedRow] = OrderedDict()
        self._holds = OffsetHolds()

    @property
    def pending_size(self) -> int:
        return len(self._pending)

    @property
    def emitted_size(self) -> int:
        return len(self._emitted)

    @property
    def waiting(self) -> KeysView[JoinKey]:
        """The keys with content waiting for their span (a live view: cheap `in` before `take`)."""
        return self._pending.keys()

    def held_offsets(self) -> dict[Partition, int]:
        """The lowest offset per (topic, partition) among the records the cached entries came from."""
        return self._holds.minimum()

    def expire(self, now: float) -> None:
        pending = self._pending
        holds = self._holds
        while pending:
            k = next(iter(pending))
            deadline, _, origins = pending[k]
            if deadline > now:
                break
            del pending[k]
            if origins:
                holds.release(origins)
        emitted = self._emitted
        while emitted:
            k = next(iter(emitted))
            e = emitted[k]
            if e.deadline > now:
                break
            del emitted[k]
            if e.origins:
                holds.release(e.origins)

    def take(self, key: JoinKey, events: EventContent | None) -> tuple[EventContent | None, Origins]:
        """Content for a span now being built: what waited for it, merged with this batch's `events`,
        and the origins of what waited (no longer held: pass them on to `remember`)."""
        pend = self._pending.pop(key, None)
        if pend is None:
            return events, None
        _, content, origins = pend
        if origins:
            self._holds.release(origins)
        if events is not None:
            content.merge(events)
        return content, origins

    def remember(self, key: JoinKey, emitted: EmittedRow, now: float, origins: Origins = None) -> None:
        emitted.deadline = now + self.window_s
        old = self._emitted.pop(key, None)  # re-inserted at the end, keeping deadline order
        if old is not None and old.origins:
            self._holds.release(old.origins)
        emitted.origins = origins
        if origins:
            self._holds.hold(origins)
        emitted.pack()
        self._emitted[key] = emitted

    def emitted(self, key: JoinKey) -> EmittedRow | None:
        return self._emitted.get(key)

    def extend(self, emitted: EmittedRow, origins: Origins) -> None:
        """Add the origins of late logs merged into a remembered row (the row must be cached)."""
        if not origins:
            return
        old = emitted.origins
        emitted.origins = merge_origins(dict(old) if old else None, origins)
        self._holds.hold(emitted.origins)  # type: ignore[arg-type]  # not None: origins is not empty
        if old:
            self._holds.release(old)

    def wait(self, key: JoinKey, events: EventContent, now: float, origins: Origins = None) -> None:
        """Keep content whose span has not come yet."""
        pend = self._pending.get(key)
        if pend is None:
            self._pending[key] = (now + self.window_s, events, origins)
            if origins:
                self._holds.hold(origins)
            return
        deadline, content, old = pend
        content.merge(events)
        if origins:
            merged = merge_origins(dict(old) if old else None, origins)
            self._pending[key] = (deadline, content, merged)  # same key: the order is kept
            self._holds.hold(merged)  # type: ignore[arg-type]
            if old:
                self._holds.release(old)

    def bound(self) -> None:
        holds = self._holds
        pending = self._pending
        excess = len(pending) - self.max_entries
        while excess > 0:  # evict oldest
            origins = pending.popitem(last=False)[1][2]
            if origins:
                holds.release(origins)
            excess -= 1
        emitted = self._emitted
        excess = len(emitted) - self.max_entries
        while excess > 0:
            origins = emitted.popitem(last=False)[1].origins
            if origins:
                holds.release(origins)
            excess -= 1

    def forget(self, partitions: Iterable[Partition]) -> int:
        """Drop every entry built from a record of `partitions` (revoked: their next owner replays
        them from the held commit). Returns how many entries were dropped."""
        gone = set(partitions)
        if not gone:
            return 0
        holds = self._holds
        dropped = 0
        for k in [k for k, p in self._pending.items() if p[2] and not gone.isdisjoint(p[2])]:
            holds.release(self._pending.pop(k)[2])  # type: ignore[arg-type]
            dropped += 1
        for k in [k for k, e in self._emitted.items() if e.origins and not gone.isdisjoint(e.origins)]:
            holds.release(self._emitted.pop(k).origins)  # type: ignore[arg-type]
            dropped += 1
        return dropped
