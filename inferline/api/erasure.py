"""Right to erasure and portability: every row held about one end user or one session of a
project, found the same way for the export and the deletion.

What belongs to a subject (`docs/operations.md#right-to-erasure-and-portability`):
- `llm_inferences`: their rows (`user_id`, or `session_id`, equal to the id);
- `feedback`: the feedback on those inferences;
- `scores`: the evaluation results about their traces (the calls, the traces as a whole), those
  naming one of their response ids, and (session only) those about the session;
- `otel_traces` / `otel_logs`: every span and log record of a trace one of those inferences
  belongs to (the whole trace: its other spans, tool calls and HTTP spans, carry the same
  conversation), and any other span or record whose span, log or resource attributes carry the id
  under one of the attribute keys inferline reads a user (or session) id from;
- `inference_usage_by_day` (user only): the rollup rows of that user. The other rollups group by
  model and time only: they hold no user or session, and keep their anonymous counts.

Deleting: the dependent tables first, `llm_inferences` last, so an erasure cut short (a crash,
a timeout) is completed by running it again. Each statement is a lightweight `DELETE FROM` that
returns only once the engine applied it (`lightweight_deletes_sync = 2`, `mutations_sync = 2`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from inferline.processors.conventions.field_sources import SESSION, USER
from inferline.storage.keys import PROJECT_ID

Kind = Literal["user", "session"]

# Attribute keys that name the subject in span, log and resource attributes (as the conventions
# read them, plus the OTel conversation id, which is a session).
_KEYS: dict[Kind, tuple[str, ...]] = {
    "user": USER,
    "session": (*SESSION, "gen_ai.conversation.id"),
}
_COLUMN: dict[Kind, str] = {"user": "user_id", "session": "session_id"}
MAX_ID_CHARS = 512
_SYNC = {"lightweight_deletes_sync": 2, "mutations_sync": 2}


def _attributes_match(maps: tuple[str, ...], kind: Kind) -> str:
    keys = "[" + ", ".join("'" + k + "'" for k in _KEYS[kind]) + "]"
    return " OR ".join(f"arrayExists(k -> {m}[k] = {{subject:String}}, {keys})" for m in maps)


def _inferences(kind: Kind, column: str) -> str:
    return (
        f"SELECT {column} FROM llm_inferences WHERE project_id = {{project:String}} "
        f"AND {_COLUMN[kind]} = {{subject:String}}"
    )


@dataclass(frozen=True, slots=True)
class Part:
    table: str
    where: str  # over `table`, with {project:String} and {subject:String}
    columns: str = "*"  # what the export reads
    final: bool = True  # ReplacingMergeTree / AggregatingMergeTree: count and export merged rows


def parts(kind: Kind) -> tuple[Part, ...]:
    """What is held about one subject, table by table, in deletion order (`llm_inferences` last)."""
    traces = _inferences(kind, "trace_id")
    ids = _inferences(kind, "inference_id")
    responses = _inferences(kind, "response_id") + " AND response_id != ''"
    session_scoped = " OR (scope = 'session' AND session_id = {subject:String})" if kind == "session" else ""
    found: list[Part] = [
        Part("feedback", f"project_id = {{project:String}} AND inference_id IN ({ids})"),
        Part(
            "scores",
            f"project_id = {{project:String}} AND (trace_id IN ({traces}) OR "
            f"(response_id != '' AND response_id IN ({responses})){session_scoped})",
        ),
        Part(
            "otel_logs",
            f"ProjectId = {{project:String}} AND (TraceId IN ({traces}) OR "
            + _attributes_match(("LogAttributes", "ResourceAttributes"), kind)
            + ")",
        ),
        Part(
            "otel_traces",
            f"ProjectId = {{project:String}} AND (TraceId IN ({traces}) OR "
            + _attributes_match(("SpanAttributes", "ResourceAttributes"), kind)
            + ")",
        ),
    ]
    if kind == "user":
        found.append(
            Part(
                "inference_usage_by_day",
                "project_id = {project:String} AND user_id = {subject:String}",
                # The digests are binary aggregate states: the export leaves them out.
                "* EXCEPT (latency_digest, ttft_digest)",
            )
        )
    found.append(
        Part("llm_inferences", f"project_id = {{project:String}} AND {_COLUMN[kind]} = {{subject:String}}")
    )
    return tuple(found)


def export_queries(kind: Kind) -> list[tuple[str, str]]:
    """(table, query) per table: JSONEachRow rows with a leading `table` field."""
    return [
        (
            p.table,
            f"SELECT '{p.table}' AS `table`, {p.columns} FROM {p.table}{' FINAL' if p.final else ''} "
            f"WHERE {p.where}",
        )
        for p in parts(kind)
    ]


def count_query(kind: Kind) -> str:
    """One row: the number of rows each table holds about the subject."""
    counts = ", ".join(
        f"(SELECT count() FROM {p.table}{' FINAL' if p.final else ''} WHERE {p.where}) AS `{p.table}`"
        for p in parts(kind)
    )
    return f"SELECT {counts}"


def subject_digest(subject: str) -> str:
    """Names the subject in the audit log without the id itself (user ids are often emails)."""
    return hashlib.sha256(subject.encode()).hexdigest()[:16]


def check(project_id: str) -> None:
    if not PROJECT_ID.match(project_id):
        raise ValueError("invalid project id")


class Eraser:
    """Deletes a subject's rows with a writable client of its own (the API's read path is
    read-only). One erasure at a time: deletes queue behind each other rather than pile up."""

    def __init__(self, client: Any, database: str) -> None:
        self._client = client
        self._database = database
        self._lock = threading.Lock()

    def counts(self, project_id: str, kind: Kind, subject: str) -> dict[str, int]:
        check(project_id)
        params = {"project": project_id, "subject": subject}
        with self._lock:
            result = self._client.query(count_query(kind), parameters=params)
        return {name: int(v) for name, v in zip(result.column_names, result.result_rows[0], strict=True)}

    def erase(self, project_id: str, kind: Kind, subject: str) -> dict[str, int]:
        """Deletes every row held about the subject; returns how many each table held. Returns
        once the engine applied every delete; a second call finds nothing and removes nothing."""
        check(project_id)
        params = {"project": project_id, "subject": subject}
        with self._lock:
            result = self._client.query(count_query(kind), parameters=params)
            held = {n: int(v) for n, v in zip(result.column_names, result.result_rows[0], strict=True)}
            for p in parts(kind):
                if held.get(p.table):
                    self._client.command(
                        f"DELETE FROM `{self._database}`.{p.table} WHERE {p.where}",
                        parameters=params,
                        settings=_SYNC,
                    )
        return held


def export_lines(sql: Any, project_id: str, kind: Kind, subject: str) -> Iterator[bytes]:
    """Everything held about the subject as JSONL, through the project-confined read path
    (`ReadOnlySql.stream`: a read-only session whose table filters keep to the project)."""
    check(project_id)
    params = {"project": project_id, "subject": subject}
    for _, query in export_queries(kind):
        yield from sql.stream(project_id, query, "JSONEachRow", params)
