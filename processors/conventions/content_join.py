"""Joining message content from log records to the rows of the spans they belong to.

Content can arrive as log records (OTel <=1.36 per-message events, >=1.37
`gen_ai.client.inference.operation.details`) before, with or after the span. Logs that come first
wait for their span; rows still missing content are remembered so that later logs produce an updated
row with a higher `version` (the table is a ReplacingMergeTree(version)). Both caches keep entries for
the join window and hold at most `max_entries` each, dropping the oldest.
"""

from __future__ import annotations

from pipeline.records import LogRecord, Row
from processors.conventions.messages import Message
from processors.conventions.otel_genai import CONTENT_EVENTS, EventContent

# (project_id, trace_id, span_id)
JoinKey = tuple[str, str, str]


def add_log(batch: dict[JoinKey, EventContent], log: LogRecord) -> None:
    """Gather a content log record into `batch` under its span; other records are ignored."""
    name = log.event_name
    if not name:
        name = log.attributes.get("event.name")
    if type(name) is not str or name not in CONTENT_EVENTS:
        return
    if not log.trace_id or not log.span_id:
        return
    key = (log.project_id, log.trace_id, log.span_id)
    ev = batch.get(key)
    if ev is None:
        ev = batch[key] = EventContent()
    ev.add(name, log.body, log.attributes)


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
    r["labels"] = list(row["labels"])
    return r


class EmittedRow:
    """A row still missing content, kept so that later logs can complete it.

    `strong` says which of prompt, response and finish reasons came from the span itself (those never
    change); `weak` holds the span's fallbacks, used while the logs bring nothing better.
    """

    __slots__ = (
        "deadline",
        "events",
        "row",
        "strong_finish",
        "strong_prompt",
        "strong_response",
        "weak_finish",
        "weak_prompt",
        "weak_response",
    )

    def __init__(
        self,
        row: Row,
        strong: tuple[bool, bool, bool],
        events: EventContent,
        weak: tuple[list[Message], list[Message], list[str]],
    ) -> None:
        self.deadline = 0.0  # set when the join remembers it
        self.row = row
        self.strong_prompt, self.strong_response, self.strong_finish = strong
        self.events = events
        self.weak_prompt, self.weak_response, self.weak_finish = weak

    def updated(self, events: EventContent) -> Row:
        """The row with `events` merged in, at version + 1 (a copy; the new row is kept)."""
        self.events.merge(events)
        row = dict(self.row)
        ev = self.events
        if not self.strong_prompt:
            row["prompt_messages"] = ev.prompt_messages() or self.weak_prompt
        if not self.strong_response:
            row["response_messages"] = ev.response_messages() or self.weak_response
        if not self.strong_finish:
            row["finish_reasons"] = ev.finish_reasons() or self.weak_finish
        row["version"] = self.row["version"] + 1
        self.row = row
        return copy_row(row)


class ContentJoin:
    """Log content waiting for its span, and emitted rows waiting for late log content.

    Not thread-safe. Insertion order is deadline order (deadlines are set on insert, never extended in
    place), so expiry and eviction both take from the front.
    """

    __slots__ = ("_emitted", "_pending", "max_entries", "window_s")

    def __init__(self, window_s: float, max_entries: int) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._pending: dict[JoinKey, tuple[float, EventContent]] = {}
        self._emitted: dict[JoinKey, EmittedRow] = {}

    @property
    def pending_size(self) -> int:
        return len(self._pending)

    @property
    def emitted_size(self) -> int:
        return len(self._emitted)

    def expire(self, now: float) -> None:
        pending = self._pending
        while pending:
            k = next(iter(pending))
            if pending[k][0] > now:
                break
            del pending[k]
        emitted = self._emitted
        while emitted:
            k = next(iter(emitted))
            if emitted[k].deadline > now:
                break
            del emitted[k]

    def take(self, key: JoinKey, events: EventContent | None) -> EventContent | None:
        """Content for a span now being built: what waited for it, merged with this batch's `events`."""
        pend = self._pending.pop(key, None)
        if pend is None:
            return events
        if events is not None:
            pend[1].merge(events)
        return pend[1]

    def remember(self, key: JoinKey, emitted: EmittedRow, now: float) -> None:
        emitted.deadline = now + self.window_s
        self._emitted.pop(key, None)  # re-inserted at the end, keeping deadline order
        self._emitted[key] = emitted

    def emitted(self, key: JoinKey) -> EmittedRow | None:
        return self._emitted.get(key)

    def wait(self, key: JoinKey, events: EventContent, now: float) -> None:
        """Keep content whose span has not come yet."""
        pend = self._pending.get(key)
        if pend is not None:
            pend[1].merge(events)
        else:
            self._pending[key] = (now + self.window_s, events)

    def bound(self) -> None:
        for cache in (self._pending, self._emitted):
            excess = len(cache) - self.max_entries
            while excess > 0:  # evict oldest
                del cache[next(iter(cache))]
                excess -= 1
