"""The one set of rules for what an OTLP record must be to be stored, applied at every receiver
before the sender is answered: a record that breaks one is reported in the OTLP partial success
(`rejected_spans` / `rejected_log_records`, with the first reason), and removed from the request
so that every stage after the durable point can rely on the rest.

`flatten` applies the same functions, so a record that somehow reaches it unchecked (a raw topic
filled by a stock Collector) is still refused the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

# DateTime64(9) ends in 2262: a later time is malformed, rejected as its own record.
MAX_TIME_NS = (1 << 63) - 1
# The rollups' (and the TTL expressions') DateTime ends at 2106-02-07 06:28:15 UTC.
MAX_STORABLE_NS = 0xFFFFFFFF * 1_000_000_000
_DAY_NS = 86_400 * 1_000_000_000

# All-zero ids: OTLP's way of saying "none".
ZERO_TRACE_ID, ZERO_SPAN_ID = bytes(16), bytes(8)


def span_problem(s: Any) -> str:
    """Why the span cannot be stored, or ""."""
    return span_fields_problem(
        s.name, s.trace_id, s.span_id, s.parent_span_id, s.start_time_unix_nano, s.end_time_unix_nano
    )


def span_fields_problem(
    name: str, trace_id: bytes, span_id: bytes, parent: bytes, start: int, end: int
) -> str:
    """`span_problem` of a span's fields (the wire reader has no message object)."""
    # OTLP/JSON writes ids as hex, not base64 (protobuf's own JSON): say so, it is the usual cause.
    if len(trace_id) != 16 or trace_id == ZERO_TRACE_ID:
        return f"span {name!r}: trace_id must be 16 bytes (32 hex characters in OTLP/JSON), not all zero"
    if len(span_id) != 8 or span_id == ZERO_SPAN_ID:
        return f"span {name!r}: span_id must be 8 bytes (16 hex characters in OTLP/JSON), not all zero"
    if parent and len(parent) != 8:
        return f"span {name!r}: parent_span_id must be 8 bytes (16 hex characters in OTLP/JSON)"
    if start > MAX_TIME_NS or end > MAX_TIME_NS:
        return f"span {name!r}: timestamp beyond the year 2262"
    return ""


def accepted_span_problem(s: Any) -> str:
    """`span_problem`, and the rules receivers apply as they accept a span, which a replay of
    what was accepted before them must not refuse: a link's ids (an unreadable one was stored
    as whatever it decoded to, "abc" as "ff"; `flatten` now stores such a link's ids empty)."""
    why = span_problem(s)
    if why or not s.links:
        return why
    return link_ids_problem(s.name, [(link.trace_id, link.span_id) for link in s.links])


def link_ids_problem(name: str, links: list[tuple[bytes, bytes]]) -> str:
    """The receivers' rule for the ids of a span's links (each link's trace and span id)."""
    for i, (link_trace_id, link_span_id) in enumerate(links):
        if len(link_trace_id) != 16 or len(link_span_id) != 8:
            return (
                f"span {name!r}: links[{i}] trace_id must be 16 bytes and span_id 8 bytes "
                "(32 and 16 hex characters in OTLP/JSON)"
            )
    return ""


def log_problem(r: Any) -> str:
    """Why the log record cannot be stored, or ""."""
    return log_fields_problem(r.trace_id, r.span_id, r.time_unix_nano, r.observed_time_unix_nano)


def log_fields_problem(trace_id: bytes, span_id: bytes, time_ns: int, observed_ns: int) -> str:
    """`log_problem` of a log record's fields (the wire reader has no message object)."""
    if trace_id and len(trace_id) != 16:
        return "log record: trace_id must be 16 bytes (32 hex characters in OTLP/JSON) when set"
    if span_id and len(span_id) != 8:
        return "log record: span_id must be 8 bytes (16 hex characters in OTLP/JSON) when set"
    if time_ns > MAX_TIME_NS or observed_ns > MAX_TIME_NS:
        return "log record: timestamp beyond the year 2262"
    return ""


# Reasons of the ingest ledger (`inferline.core.ledger`), one per kind of rule above.
INVALID_ID = "invalid_id"
TIME_BEYOND_2262 = "time_beyond_2262"
TIME_AFTER_2106 = "time_after_2106"
OLDER_THAN_RETENTION = "older_than_retention"
TOO_LARGE = "too_large"
UNTIMED_LOG_STAMPED = "untimed_log_stamped"  # a correction, not a rejection


def reason_code(why: str) -> str:
    """The ledger's reason for a rule's message (the messages above, and `TOO_LARGE`'s)."""
    if "beyond the year 2262" in why:
        return TIME_BEYOND_2262
    if "after 2106-02-07" in why:
        return TIME_AFTER_2106
    if "older than the retention window" in why:
        return OLDER_THAN_RETENTION
    if "_id must be" in why:
        return INVALID_ID
    if "size limit" in why:
        return TOO_LARGE
    return "invalid"


@dataclass(slots=True)
class Rejected:
    """Records removed from a request, and the first reason (the OTLP partial success); per
    reason, and the records kept with a correction, for the ingest ledger."""

    count: int = 0
    message: str = ""
    reasons: dict[str, int] = field(default_factory=dict)
    corrected: dict[str, int] = field(default_factory=dict)

    def add(self, n: int, why: str) -> None:
        self.count += n
        if not self.message:
            self.message = why
        code = reason_code(why)
        self.reasons[code] = self.reasons.get(code, 0) + n

    def correct(self, n: int, reason: str) -> None:
        if n:
            self.corrected[reason] = self.corrected.get(reason, 0) + n


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """What the tables can keep: a record older than the retention of a table it lands in would be
    deleted at once (its TTL has passed), one after 2106-02-07 cannot be held by the rollups'
    `DateTime`. Receivers reject both, naming the field; the id and year-2262 rules above apply
    everywhere, these only where records are accepted (a replay days later must not refuse what
    was accepted)."""

    spans_days: int
    logs_days: int
    # The longest any table keeps rows (rollups may keep theirs longer than the raw tables): a row
    # expires at its time plus this, which must itself be a time the tables' `DateTime` holds (a
    # span of 2105-12 with a 180-day TTL expired "in 1970", deleted as soon as it was stored).
    longest_days: int = 0

    def span_problem(self, s: Any, now_ns: int) -> str:
        why = accepted_span_problem(s)
        if why:
            return why
        return self.span_start_problem(s.name, s.start_time_unix_nano, now_ns)

    def span_start_problem(self, name: str, start: int, now_ns: int) -> str:
        """The window's rule for a span's start time."""
        why = self._problem(start, self.spans_days, now_ns)
        return f"span {name!r}: start_time_unix_nano {why}" if why else ""

    def accepted_times(self, days: int, now_ns: int) -> tuple[int, int]:
        """[low, high): the times `_problem` finds nothing wrong with, for a table keeping `days`
        (a reader of many records compares, and asks for the reason only outside)."""
        keep = max(days, self.longest_days)
        return now_ns - days * _DAY_NS, MAX_STORABLE_NS - keep * _DAY_NS

    def log_problem(self, r: Any, now_ns: int) -> str:
        return self.log_fields_problem(
            r.trace_id, r.span_id, r.time_unix_nano, r.observed_time_unix_nano, now_ns
        )

    def log_fields_problem(
        self, trace_id: bytes, span_id: bytes, time_ns: int, observed_ns: int, now_ns: int
    ) -> str:
        """`log_problem` of a log record's fields."""
        why = log_fields_problem(trace_id, span_id, time_ns, observed_ns)
        if why:
            return why
        # The record's time, or when it was observed: what its row is stored (and expires) by.
        field, t = ("time_unix_nano", time_ns) if time_ns else ("observed_time_unix_nano", observed_ns)
        if not t:
            return ""  # no time at all: `stamp_untimed_logs` gives it the time it was received
        why = self._problem(t, self.logs_days, now_ns)
        return f"log record: {field} {why}" if why else ""

    def _problem(self, t: int, days: int, now_ns: int) -> str:
        """What is wrong with time `t` (the end of a sentence naming the field), or ""."""
        if t >= MAX_STORABLE_NS:
            return f"{_iso(t)} is after 2106-02-07, the latest time the tables can hold"
        keep = max(days, self.longest_days)
        if t >= MAX_STORABLE_NS - keep * _DAY_NS:
            return (
                f"{_iso(t)} is too late: kept {keep} days, it would expire after 2106-02-07, "
                "the latest time the tables can hold"
            )
        if t < now_ns - days * _DAY_NS:
            return f"{_iso(t)} is older than the retention window ({days} days): it would be deleted at once"
        return ""


def stamp_untimed_logs(request: ExportLogsServiceRequest, now_ns: int) -> int:
    """A log record with neither time nor observed time gets its observed time now, as the OTLP
    data model asks of the first component that sees it (else it would be stored at 1970 and
    expire at once). Returns how many were stamped."""
    stamped = 0
    for resource in request.resource_logs:
        for scope in resource.scope_logs:
            for record in scope.log_records:
                if not record.time_unix_nano and not record.observed_time_unix_nano:
                    record.observed_time_unix_nano = now_ns
                    stamped += 1
    return stamped


def remove_invalid(
    request: ExportTraceServiceRequest | ExportLogsServiceRequest, window: TimeWindow | None = None
) -> Rejected:
    """Removes, in place, every record that breaks a rule (and, given a window, every record the
    tables could not keep); scopes and resources left empty go too."""
    now = time.time_ns()
    if isinstance(request, ExportTraceServiceRequest):
        if window is None:
            return _remove(request.resource_spans, "scope_spans", "spans", accepted_span_problem)
        return _remove(request.resource_spans, "scope_spans", "spans", lambda s: window.span_problem(s, now))
    if window is None:
        return _remove(request.resource_logs, "scope_logs", "log_records", log_problem)
    stamped = stamp_untimed_logs(request, now)
    rejected = _remove(
        request.resource_logs, "scope_logs", "log_records", lambda r: window.log_problem(r, now)
    )
    rejected.correct(stamped, UNTIMED_LOG_STAMPED)
    return rejected


def _remove(resources: Any, scopes_field: str, records_field: str, problem: Any) -> Rejected:
    rejected = Rejected()
    for resource in resources:
        for scope in getattr(resource, scopes_field):
            records = getattr(scope, records_field)
            bad = []
            for i, record in enumerate(records):
                why = problem(record)
                if why:
                    rejected.add(1, why)
                    bad.append(i)
            for i in reversed(bad):
                del records[i]
    if rejected.count:
        for resource in resources:
            scopes = getattr(resource, scopes_field)
            for i in reversed(range(len(scopes))):
                if not getattr(scopes[i], records_field):
                    del scopes[i]
        for i in reversed(range(len(resources))):
            if not getattr(resources[i], scopes_field):
                del resources[i]
    return rejected
