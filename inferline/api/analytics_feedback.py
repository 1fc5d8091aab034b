"""Feedback per analytics group: the feedback entries on a group's calls in the range, summarised
as one inference's feedback is (count, ratings and their average, thumbs, comments).

Feedback lives in its own table, keyed by inference: each entry is counted in the group of the
inference it rates, and in the range by that inference's start (`feedback.inference_time`), so a
group's feedback is the feedback on the calls that group's other figures count.
"""

from __future__ import annotations

from inferline.api.analytics_plan import Dimension, group_set, raw_dimension
from inferline.api.deps import ApiContext, Caller
from inferline.api.feedback import SUMMARY_COLUMNS, FeedbackSummary, summary_of
from inferline.api.filters import InferenceFilters, where_clause


def feedback_by_group(
    filters: InferenceFilters,
    group_by: Dimension,
    tag_key: str | None,
    groups: list[str],
    who: Caller,
    ctx: ApiContext,
) -> dict[str, FeedbackSummary]:
    """The summary of each of `groups` (values of the dimension); a group without feedback is
    left out."""
    if not groups:
        return {}
    expr = raw_dimension(group_by)
    where, params = where_clause(filters, who.project_id)
    if tag_key is not None:
        params["g_tag"] = tag_key
    # Only the range, on the inference's time as the feedback row keeps it: the rated
    # inferences are looked up by id (a bloom filter index), never scanned for the whole range.
    dates = InferenceFilters(from_date=filters.from_date, to_date=filters.to_date)
    in_range, _ = where_clause(dates, who.project_id, time_column="inference_time")
    query = (
        f"SELECT calls.dim AS dim, {SUMMARY_COLUMNS} FROM feedback FINAL\n"
        "INNER JOIN (\n"
        f"    SELECT inference_id, any({expr}) AS dim FROM llm_inferences\n"
        f"    WHERE {where} AND {expr} IN {group_set(groups, params)}\n"
        f"        AND inference_id IN (SELECT inference_id FROM feedback WHERE {in_range})\n"
        "    GROUP BY inference_id\n"
        ") AS calls ON feedback.inference_id = calls.inference_id\n"
        f"WHERE {in_range}\nGROUP BY dim"
    )
    rows = ctx.sql.rows(who.project_id, query, params)
    return {str(r["dim"]): summary_of(r) for r in rows}
