"""Evaluation results → `scores` rows.

Two conventions carry them (docs/conventions.md, "Evaluation scores"):

- OTel GenAI (semconv 1.38+): the event `gen_ai.evaluation.result` with `gen_ai.evaluation.name`,
  `.score.value`, `.score.label`, `.explanation` and, when no span context identifies the call,
  `gen_ai.response.id`. It arrives as a span event (judging that span) or as a log record (judging
  the span of its context; without one, the call with that response id).
- OpenInference annotations / evaluations: flattened attributes `annotations.<i>.annotation.*` and
  `evaluations.<i>.evaluation.*` (span scope), with `trace.` or `session.` in front (trace and
  session scope). Inline they judge the span (or trace) carrying them; a post-hoc carrier span has
  exactly one span link, to the span (or a span of the trace) judged.

Rows are keyed to what they judge, never joined here: a score may arrive before or after its call,
in another request, and the API matches it by trace and span, or by response id, when reading.

Hot path: spans without events or feedback attributes cost a few dict lookups.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from typing import Any

import structlog

from inferline.core.records import LOG_CARRIER, SPAN_CARRIER, LogRecord, Row, ScoreCarrier, Span
from inferline.processors.conventions.values import as_float, as_str, stringify
from inferline.processors.normalise import inference_id

EVALUATION_EVENT = "gen_ai.evaluation.result"
_NAME = "gen_ai.evaluation.name"
_VALUE = "gen_ai.evaluation.score.value"
_LABEL = "gen_ai.evaluation.score.label"
_EXPLANATION = "gen_ai.evaluation.explanation"
_RESPONSE_ID = "gen_ai.response.id"

log = structlog.get_logger()
NIL_UUID = str(uuid.UUID(int=0))
OTEL, OPENINFERENCE = "otel_genai", "openinference"
SPAN, TRACE, SESSION = "span", "trace", "session"

# OpenInference collections: (key prefix, object name, scope). Indices are zero-based (MUST), so a
# span whose `.0.` name key is absent carries no collection of that kind (checked by one lookup).
_OI_COLLECTIONS = (
    ("annotations.", "annotation", SPAN),
    ("evaluations.", "evaluation", SPAN),
    ("trace.annotations.", "annotation", TRACE),
    ("trace.evaluations.", "evaluation", TRACE),
    ("session.annotations.", "annotation", SESSION),
    ("session.evaluations.", "evaluation", SESSION),
)
_OI_FIRST_KEYS = tuple(
    (f"{p}0.{o}.name", f"{p}0.{o}.score", f"{p}0.{o}.label") for p, o, _ in _OI_COLLECTIONS
)
_OI_FIELDS = ("name", "score", "label", "explanation", "annotator_kind", "identifier", "metadata")


def score_id(project_id: str, trace_id: str, span_id: str) -> str:
    """The judged span's inference id (the normaliser's uuid5), nil when no span is named."""
    return inference_id(project_id, trace_id, span_id) if span_id else NIL_UUID


def score_value(raw: Any) -> tuple[float | None, str]:
    """(value, label from the value): a number as it is; true/false as 1/0; anything else (a
    word, NaN, infinity) keeps its text as the label and has no value."""
    if raw is None:
        return None, ""
    if isinstance(raw, bool):
        return (1.0 if raw else 0.0), ""
    value = as_float(raw)
    if value is not None:
        return value, ""
    if isinstance(raw, float) and math.isnan(raw):
        return None, "NaN"
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else stringify(raw) or ""
    return None, text.strip()


def scores(spans: list[Span], logs: list[LogRecord], carriers: list[ScoreCarrier] | None = None) -> list[Row]:
    """The score rows of a batch's spans (their events and OpenInference attributes) and of its
    evaluation log records, and in `carriers` the record each row came from. A record that
    cannot be read is skipped (its span and log rows are stored as usual); the rest go on."""
    rows: list[Row] = []
    for i, span in enumerate(spans):
        before = len(rows)
        try:
            if span.events:
                rows.extend(_span_events(span))
            a = span.attributes
            for collection, first in zip(_OI_COLLECTIONS, _OI_FIRST_KEYS, strict=True):
                if first[0] in a or first[1] in a or first[2] in a:
                    rows.extend(_openinference(span, *collection))
        except Exception as e:  # its span row is stored as usual
            _skipped("span", span.trace_id, e)
        if carriers is not None and len(rows) > before:
            carriers += [ScoreCarrier(SPAN_CARRIER, i)] * (len(rows) - before)
    for i, record in enumerate(logs):
        if is_evaluation(record):
            try:
                rows.append(_log_record(record))
            except Exception as e:  # its log row is stored as usual
                _skipped("log record", record.trace_id, e)
                continue
            if carriers is not None:
                carriers.append(ScoreCarrier(LOG_CARRIER, i))
    return rows


# The short text columns' bounds (group keys of the score analytics). Applied after the chain's
# stages (`bound_score_texts`): a value cut before the PII stage could leave half an address that
# no detector reads as one ("jane.doe@exa").
SCORE_TEXT_LIMITS = (("name", 256), ("label", 256), ("identifier", 256), ("evaluator", 64))


def bound_score_texts(rows: list[Row]) -> None:
    """Cuts the short text columns of score rows to their bounds."""
    for row in rows:
        for column, limit in SCORE_TEXT_LIMITS:
            value = row.get(column)
            if isinstance(value, str) and len(value) > limit:
                row[column] = value[:limit]


def is_evaluation(record: LogRecord) -> bool:
    """Whether a log record carries an evaluation result (a `scores` row)."""
    return (record.event_name or record.attributes.get("event.name")) == EVALUATION_EVENT


def _skipped(carrier: str, trace_id: str, error: Exception) -> None:
    log.warning(
        "an evaluation result could not be read; skipped",
        carrier=carrier,
        trace_id=trace_id,
        error=f"{type(error).__name__}: {error}"[:300],
    )


def _row(
    project_id: str,
    time_ns: int,
    scope: str,
    target: tuple[str, str],
    response_id: str,
    fields: dict[str, Any],
    source: str,
    carrier_span_id: str,
    session_id: str = "",
) -> Row:
    trace_id, span_id = target
    value, value_text = score_value(fields.get("score"))
    label = as_str(fields.get("label")) or value_text
    return {
        "project_id": project_id,
        "timestamp": time_ns,
        "scope": scope,
        "trace_id": trace_id,
        "span_id": span_id,
        "inference_id": score_id(project_id, trace_id, span_id) if scope == SPAN else NIL_UUID,
        "response_id": response_id,
        "session_id": session_id,
        "name": as_str(fields.get("name")) or "",
        "value": value,
        "label": label,
        "explanation": stringify(fields.get("explanation")) or "",
        "evaluator": as_str(fields.get("annotator_kind")) or "",
        "identifier": as_str(fields.get("identifier")) or "",
        "metadata": stringify(fields.get("metadata")) or "",
        "source": source,
        "carrier_span_id": carrier_span_id,
        "pii_found": {},
    }


def _otel_fields(a: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": a.get(_NAME),
        "score": a.get(_VALUE),
        "label": a.get(_LABEL),
        "explanation": a.get(_EXPLANATION),
    }


def _span_events(span: Span) -> Iterator[Row]:
    """Evaluation events on a span judge that span; its own response id is kept as well."""
    for event in span.events:
        if event.name != EVALUATION_EVENT:
            continue
        a = event.attributes
        response_id = as_str(a.get(_RESPONSE_ID)) or as_str(span.attributes.get(_RESPONSE_ID)) or ""
        yield _row(
            span.project_id,
            _event_time(event.time_ns, span),
            SPAN,
            (span.trace_id, span.span_id),
            response_id,
            _otel_fields(a),
            OTEL,
            span.span_id,
        )


_DAY_NS = 86_400 * 1_000_000_000


def _event_time(time_ns: int, span: Span) -> int:
    """An evaluation event's time, or its span's end when the time cannot be the event's: a span
    records its events while it runs (a day later is allowed, for judges that add theirs after
    the fact). An event at 1 ns or in 2000 made a score row the retention TTL deleted at once."""
    end = max(span.end_ns, span.start_ns)
    if span.start_ns <= time_ns <= end + _DAY_NS:
        return time_ns
    return end


def _log_record(record: LogRecord) -> Row:
    """An evaluation log record judges the span of its context, else the call with its response
    id. Its fields are attributes; a body map is read for the ones missing there."""
    a = record.attributes
    fields = _otel_fields(a)
    body = record.body
    if isinstance(body, dict):
        for key, name in (
            (_NAME, "name"),
            (_VALUE, "score"),
            (_LABEL, "label"),
            (_EXPLANATION, "explanation"),
        ):
            if fields[name] is None:
                fields[name] = body.get(key)
    response_id = as_str(a.get(_RESPONSE_ID)) or (
        as_str(body.get(_RESPONSE_ID)) if isinstance(body, dict) else None
    )
    # A log record without a span context says nothing about the trace either.
    target = (record.trace_id, record.span_id) if record.span_id else ("", "")
    return _row(
        record.project_id,
        record.time_ns or record.observed_time_ns,
        SPAN,
        target,
        response_id or "",
        fields,
        OTEL,
        record.span_id,
    )


def _openinference(span: Span, prefix: str, obj: str, scope: str) -> Iterator[Row]:
    """Each object of one OpenInference collection on `span`."""
    a = span.attributes
    found: dict[str, dict[str, Any]] = {}
    for key, value in a.items():
        if not key.startswith(prefix):
            continue
        index, _, rest = key[len(prefix) :].partition(".")
        head, _, field = rest.partition(".")
        if head == obj and field in _OI_FIELDS and index.isdigit():
            found.setdefault(index, {})[field] = value
    # A post-hoc carrier has exactly one link: to what it judges. Inline, it judges itself.
    link = span.links[0] if len(span.links) == 1 else None
    trace_id = link.trace_id if link is not None and link.trace_id else span.trace_id
    if scope == SPAN:
        target = (
            (trace_id, link.span_id) if link is not None and link.span_id else (span.trace_id, span.span_id)
        )
    elif scope == TRACE:
        target = (trace_id, "")
    else:
        target = ("", "")
    session_id = (as_str(a.get("session.id")) or "") if scope == SESSION else ""
    for index in sorted(found, key=int):
        fields = found[index]
        if fields.get("name") is None and all(
            fields.get(k) is None for k in ("score", "label", "explanation")
        ):
            continue
        yield _row(
            span.project_id,
            span.end_ns or span.start_ns,
            scope,
            target,
            "",
            fields,
            OPENINFERENCE,
            span.span_id,
            session_id,
        )
