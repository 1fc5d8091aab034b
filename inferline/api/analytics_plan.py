"""Where an analytics question is answered from, decided in one place (`plan`), and the one
query that answers it (`stats_query`).

The range is cut into segments: the whole hours inside it from `inference_stats_by_hour`, the
whole minutes at its edges from `inference_stats_by_minute`, and the seconds left at the very
edges from `llm_inferences` itself (whole hours from `inference_attribution_by_hour` when the
question is about tenants or features, whole days from `inference_usage_by_day` when it is about
users). Every segment yields the same partial aggregates
(inferline.storage.rollups.AGGREGATES), so one outer query merges them, and the answer is the one the raw
table gives. Only `llm_inferences` answers when a filter or grouping is one no rollup has (tags,
search, success, tokens, latency, session, scores), or when `source` is "raw".

Raw segments read `llm_inferences FINAL`: one row per inference, whatever versions it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from inferline.api.filters import InferenceFilters, model_condition, where_clause
from inferline.storage.rollups import (
    AGGREGATES,
    ATTRIBUTION_BY_HOUR,
    BY_HOUR,
    BY_MINUTE,
    FEATURE_TAG,
    USAGE_BY_DAY,
    Aggregate,
    Rollup,
)

RAW_TABLE = "llm_inferences"
Interval = Literal["minute", "hour", "day"]
Dimension = Literal["model", "provider", "user", "tenant", "feature", "tag", "session"]
INTERVAL_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_START_OF = {"minute": "toStartOfMinute", "hour": "toStartOfHour", "day": "toStartOfDay"}
# Rollup families, finest bucket last; the first family that has every column asked for answers.
_FAMILIES: tuple[tuple[Rollup, ...], ...] = ((BY_HOUR, BY_MINUTE), (ATTRIBUTION_BY_HOUR,), (USAGE_BY_DAY,))
# API dimension → (rollup column, llm_inferences expression).
_DIMENSIONS = {
    "model": ("model", "model"),
    "provider": ("provider", "provider"),
    "user": ("user_id", "user_id"),
    "tenant": ("tenant_id", "tenant_id"),
    "feature": ("feature", f"tags['{FEATURE_TAG}']"),
    "tag": (None, "tags[{g_tag:String}]"),
    "session": (None, "session_id"),  # no rollup keeps sessions
}
# Rollups hold times as DateTime (1970 … 2106); a range reaching past either end is open there.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATETIME_END = datetime(2106, 1, 1, tzinfo=UTC)
_DATETIME64_END = datetime(2262, 4, 11, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Segment:
    rollup: Rollup | None  # None: llm_inferences
    start: datetime  # inclusive
    end: datetime | None  # None: open
    end_inclusive: bool

    @property
    def table(self) -> str:
        return self.rollup.table if self.rollup else RAW_TABLE


@dataclass(frozen=True, slots=True)
class Question:
    filters: InferenceFilters
    group_by: Dimension | None = None
    tag_key: str | None = None
    interval: Interval | None = None
    source: Literal["auto", "raw"] = "auto"


def _rollup_columns(question: Question) -> set[str] | None:
    """The rollup columns the question needs, or None when no rollup can answer it."""
    f = question.filters
    if question.source == "raw" or question.group_by in ("tag", "session"):
        return None
    if any(
        v is not None
        for v in (f.is_success, f.min_tokens, f.max_tokens, f.max_latency_ms, f.session, f.search, f.scores)
    ):
        return None
    needed: set[str] = set()
    if f.tags:
        # Only the feature tag is a rollup column ('' there when the tag is absent).
        if set(f.tags) != {FEATURE_TAG} or not f.tags[FEATURE_TAG]:
            return None
        needed.add("feature")
    if f.model is not None:
        needed |= {"model", "request_model"}
    for name, column in (("provider", "provider"), ("user", "user_id"), ("tenant", "tenant_id")):
        if getattr(f, name) is not None:
            needed.add(column)
    if question.group_by is not None:
        needed.add(_DIMENSIONS[question.group_by][0] or "")
    return needed


def plan(question: Question) -> list[Segment]:
    """The segments that together cover the question's range exactly once."""
    f = question.filters
    start = max(f.from_date, _EPOCH)  # OTLP times are unsigned: no row is older
    end = f.to_date if f.to_date is None or f.to_date < _DATETIME_END else None
    levels: tuple[Rollup, ...] = ()
    needed = _rollup_columns(question) if start < _DATETIME_END else None
    if needed is not None:
        for family in _FAMILIES:
            if needed <= family[0].dimension_names:
                step = INTERVAL_SECONDS[question.interval] if question.interval else None
                levels = tuple(r for r in family if step is None or step % r.seconds == 0)
                break
    if end is not None and end < start:
        return []
    return _cover(start, end, end is not None, levels)


def _cover(
    start: datetime, end: datetime | None, end_inclusive: bool, levels: tuple[Rollup, ...]
) -> list[Segment]:
    if end is not None and (start > end or (start == end and not end_inclusive)):
        return []
    if not levels:
        return [Segment(None, start, end, end_inclusive)]
    rollup, finer = levels[0], levels[1:]
    first = _ceil(start, rollup.seconds)
    last = _floor(end, rollup.seconds) if end is not None else None
    if last is not None and first >= last:
        return _cover(start, end, end_inclusive, finer)
    segments = _cover(start, first, False, finer)
    segments.append(Segment(rollup, first, last, False))
    if last is not None:
        segments += _cover(last, end, end_inclusive, finer)
    return segments


def _floor(t: datetime, seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=(t - _EPOCH) // timedelta(seconds=seconds) * seconds)


def _ceil(t: datetime, seconds: int) -> datetime:
    floor = _floor(t, seconds)
    return floor if floor == t else floor + timedelta(seconds=seconds)


def stats_query(
    question: Question,
    project_id: str,
    order_by: str = "",
    limit: int | None = None,
    *,
    aggregates: tuple[Aggregate, ...] = AGGREGATES,
    only_groups: list[str] | None = None,
) -> tuple[str, dict[str, Any], list[str]]:
    """(query, parameters, tables read). Columns: `dim` when grouped, `bucket` (unix seconds) with
    an interval, then `aggregates` (by default every one of inferline.storage.rollups) merged.
    `only_groups`: the groups (values of `dim`; at least one) to aggregate; every other row is
    skipped before it is aggregated."""
    segments = plan(question)
    raw_where, params = where_clause(question.filters, project_id)
    if question.tag_key is not None:
        params["g_tag"] = question.tag_key
    only = None if only_groups is None else group_set(only_groups, params)
    shape = _Shape(question, aggregates, only)
    parts = [_segment_query(shape, seg, i, raw_where, params) for i, seg in enumerate(segments)]
    if not parts:  # an empty range: the raw table answers it (with nothing)
        parts = [
            _segment_query(
                shape,
                Segment(None, question.filters.from_date, question.filters.from_date, False),
                0,
                raw_where,
                params,
            )
        ]
    keys = [k for k, on in (("dim", question.group_by), ("bucket", question.interval)) if on]
    merged = [f"{a.merge}({a.name}) AS {a.name}" for a in aggregates]
    select = ", ".join(
        [*keys, *(["toUnixTimestamp(bucket) AS bucket_ts"] if question.interval else []), *merged]
    )
    union = "\n    UNION ALL\n    ".join(parts)
    query = f"SELECT {select}\nFROM (\n    {union}\n)"
    if keys:
        query += f"\nGROUP BY {', '.join(keys)}"
    if order_by:
        query += f"\nORDER BY {order_by}"
    if limit is not None:
        query += f"\nLIMIT {int(limit)}"
    tables = list(dict.fromkeys(s.table for s in segments)) or [RAW_TABLE]
    return query, params, tables


def group_set(groups: list[str], params: dict[str, Any]) -> str:
    """`groups` as the right side of IN, "({g_only_0:String}, …)", their parameters added to
    `params`. A String parameter each: any text (quotes, backslashes, newlines) arrives intact."""
    names = [f"g_only_{i}" for i in range(len(groups))]
    params.update(zip(names, groups, strict=True))
    return "(" + ", ".join(f"{{{n}:String}}" for n in names) + ")"


def raw_dimension(group_by: Dimension) -> str:
    """The group's expression over `llm_inferences` columns (a tag's: parameter g_tag)."""
    return _DIMENSIONS[group_by][1]


@dataclass(frozen=True, slots=True)
class _Shape:
    """What every segment of one query selects."""

    question: Question
    aggregates: tuple[Aggregate, ...]
    only_groups: str | None  # the set of `dim` values aggregated, "({g_only_0:String}, …)"; None: all


def _segment_query(shape: _Shape, seg: Segment, i: int, raw_where: str, params: dict[str, Any]) -> str:
    question, rollup = shape.question, seg.rollup
    keys = []
    only: list[str] = []
    if question.group_by:
        column, expr = _DIMENSIONS[question.group_by]
        keys.append(f"{column if rollup else expr} AS dim")
        if shape.only_groups:
            only.append(f"{column if rollup else expr} IN {shape.only_groups}")
    if question.interval:
        time = _rollup_time(rollup) if rollup else "toDateTime(start_time, 'UTC')"
        keys.append(f"{_START_OF[question.interval]}({time}) AS bucket")
    if rollup is None:
        conditions = [raw_where, *only]
        lo_type, lo_text = "DateTime64(9, 'UTC')", _text(seg.start, 6)
        conditions.append(f"start_time >= {{s{i}_lo:{lo_type}}}")
        params[f"s{i}_lo"] = lo_text
        if seg.end is not None:
            # Inclusive to the microsecond, as the filters are (stored times have nanoseconds).
            hi = f"{{s{i}_hi:{lo_type}}}"
            conditions.append(
                f"start_time < addMicroseconds({hi}, 1)" if seg.end_inclusive else f"start_time < {hi}"
            )
            params[f"s{i}_hi"] = _text(seg.end, 6)
        aggregates = [f"{a.state} AS {a.name}" for a in shape.aggregates]
        group = f" GROUP BY {', '.join(k.rsplit(' AS ', 1)[1] for k in keys)}" if keys else ""
        # HAVING: an ungrouped aggregate over no rows is one row of zeros (a min latency of 0).
        return (
            f"SELECT {', '.join([*keys, *aggregates])} FROM {RAW_TABLE} FINAL "
            f"WHERE {' AND '.join(conditions)}{group} HAVING requests > 0"
        )
    bucket_type = "Date" if rollup.bucket_type == "Date" else "DateTime('UTC')"
    digits = -1 if bucket_type == "Date" else 0
    conditions = ["project_id = {project:String}", f"{rollup.bucket} >= {{s{i}_lo:{bucket_type}}}"]
    params[f"s{i}_lo"] = _text(seg.start, digits)
    if seg.end is not None:
        conditions.append(f"{rollup.bucket} < {{s{i}_hi:{bucket_type}}}")
        params[f"s{i}_hi"] = _text(seg.end, digits)
    conditions += _rollup_filters(question.filters) + only
    columns = [*keys, *(a.name for a in shape.aggregates)]
    return f"SELECT {', '.join(columns)} FROM {rollup.table} WHERE {' AND '.join(conditions)}"


def _rollup_time(rollup: Rollup) -> str:
    return f"toDateTime({rollup.bucket}, 'UTC')" if rollup.bucket_type == "Date" else rollup.bucket


def _rollup_filters(f: InferenceFilters) -> list[str]:
    """The filters `_rollup_columns` allows, over rollup columns, with where_clause's parameters."""
    conditions = []
    if f.model is not None:
        conditions.append(model_condition(f.model))
    for name, column in (("provider", "provider"), ("user", "user_id"), ("tenant", "tenant_id")):
        if getattr(f, name) is not None:
            conditions.append(f"{column} = {{f_{name}:String}}")
    if f.tags:
        conditions.append("feature = {f_tag_value_0:String}")
    return conditions


def _text(t: datetime, digits: int) -> str:
    """A time as ClickHouse parses it: a date (digits -1), seconds (0) or microseconds (6)."""
    t = min(t, _DATETIME64_END)
    if digits < 0:
        return t.strftime("%Y-%m-%d")
    return t.strftime("%Y-%m-%d %H:%M:%S.%f" if digits else "%Y-%m-%d %H:%M:%S")
