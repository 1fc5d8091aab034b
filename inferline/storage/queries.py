"""The SQL text of the inference API's queries: listing, counting, export, one inference, and
the averages it is compared with.

Only column names, fixed expressions and `{name:Type}` parameters appear here; values arrive as
query parameters. `where` is the output of `inferline.api.filters.where_clause`. Reads use `FINAL`: an
inference rewritten when its content arrived later must count and list once.
"""

from __future__ import annotations

from typing import Literal

SortBy = Literal["timestamp", "tokens", "latency", "cost"]
SortOrder = Literal["asc", "desc"]

SORT_COLUMNS: dict[str, str] = {
    "timestamp": "start_time",
    "tokens": "total_tokens",
    "latency": "latency_ms",
    "cost": "total_cost_usd",
}

# The last user message (the question this call answers), else the last message of any role.
_PROMPT_PREVIEW = """leftUTF8(if(
        JSONExtractString(arrayLast(m -> JSONExtractString(m, 'role') = 'user',
            JSONExtractArrayRaw(prompt_messages)), 'content') AS last_user != '',
        last_user,
        JSONExtractString(JSONExtractArrayRaw(prompt_messages)[-1], 'content')), 100)"""
PROMPT_PREVIEW = _PROMPT_PREVIEW  # also the insights' repeated prompts
# The first response message with text.
_RESPONSE_PREVIEW = """leftUTF8(JSONExtractString(arrayFirst(m -> JSONExtractString(m, 'content') != '',
        JSONExtractArrayRaw(response_messages)), 'content'), 100)"""
_TIMESTAMP = "formatDateTime(start_time, '%Y-%m-%dT%H:%i:%S.%fZ')"

# A listed inference; JSONL exports carry the same columns.
ITEM_COLUMNS = f"""toString(inference_id) AS inference_id,
    {_TIMESTAMP} AS timestamp,
    model AS model_name,
    provider,
    {_PROMPT_PREVIEW} AS prompt_preview,
    {_RESPONSE_PREVIEW} AS response_preview,
    input_tokens,
    output_tokens,
    total_tokens,
    cache_read_tokens,
    cache_write_tokens,
    reasoning_tokens,
    latency_ms AS response_time_ms,
    ttft_ms,
    total_cost_usd AS cost,
    provided_cost_usd AS provided_cost,
    price_status,
    success AS is_success,
    error_type"""


def _spreadsheet_safe(expression: str, name: str) -> str:
    """Text a sender wrote, as a CSV cell a spreadsheet will not run: one starting with = + - @,
    a tab or a carriage return is a formula to Excel and Sheets (`=HYPERLINK("http://…")` sends
    data away), so it gets a leading apostrophe (OWASP's CSV injection advice). `name`: an alias
    of its own for the text, so the expression is computed once."""
    text = f"{name}_text"
    return f"if(match({expression} AS {text}, '^[-=+@\\t\\r]'), concat('\\'', {text}), {text})"


# The seed's CSV export: inference_id,timestamp,model_name,prompt_preview,response_preview,
# input_tokens,output_tokens,response_time_ms,cost,is_success
CSV_COLUMNS = f"""toString(inference_id) AS inference_id,
    {_TIMESTAMP} AS timestamp,
    {_spreadsheet_safe("model", "model_name")} AS model_name,
    {_spreadsheet_safe(_PROMPT_PREVIEW, "prompt_preview")} AS prompt_preview,
    {_spreadsheet_safe(_RESPONSE_PREVIEW, "response_preview")} AS response_preview,
    input_tokens,
    output_tokens,
    latency_ms AS response_time_ms,
    total_cost_usd AS cost,
    success AS is_success"""

# What the list's inner query reads: the columns the items are made of.
_RAW_COLUMNS = (
    "inference_id, start_time, model, provider, prompt_messages, response_messages, input_tokens, "
    "output_tokens, total_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, latency_ms, "
    "ttft_ms, total_cost_usd, provided_cost_usd, price_status, success, error_type"
)


def order_by(sort_by: SortBy, sort_order: SortOrder) -> str:
    """ORDER BY text from the two whitelisted choices; the id breaks ties, so pages are stable.
    (`inference_id` is compared as text: the outer queries alias it to its text form.)"""
    direction = "ASC" if sort_order == "asc" else "DESC"
    return f"{SORT_COLUMNS[sort_by]} {direction} NULLS LAST, toString(inference_id) {direction}"


def list_page(where: str, sort_by: SortBy, sort_order: SortOrder) -> str:
    """One page: the inner query picks the rows (reading only what items need), the outer one
    makes the previews for just those rows. Parameters: `limit`, `offset` and the filters'."""
    order = order_by(sort_by, sort_order)
    return (
        f"SELECT {ITEM_COLUMNS}\nFROM (\n"
        f"    SELECT {_RAW_COLUMNS} FROM llm_inferences FINAL\n    WHERE {where}\n"
        f"    ORDER BY {order}\n    LIMIT {{limit:UInt32}} OFFSET {{offset:UInt64}}\n)\n"
        f"ORDER BY {order.replace('toString(inference_id)', 'inference_id')}"
    )


def count(where: str) -> str:
    return f"SELECT count() AS total FROM llm_inferences FINAL WHERE {where}"


def export(where: str, sort_by: SortBy, sort_order: SortOrder, columns: str, limited: bool) -> str:
    """Every matching row (or the first `limit`), in list order."""
    order = order_by(sort_by, sort_order).replace("toString(inference_id)", "inference_id")
    limit = " LIMIT {limit:UInt64}" if limited else ""
    return f"SELECT {columns}\nFROM llm_inferences FINAL\nWHERE {where}\nORDER BY {order}{limit}"


# One inference: parameters `project`, `id`. (No alias may shadow `inference_id`: the WHERE
# compares the column.)
DETAIL = """SELECT
    toString(inference_id) AS inference_id_text, project_id, trace_id, span_id, parent_span_id, response_id,
    formatDateTime(start_time, '%Y-%m-%dT%H:%i:%S.%fZ') AS start_time_iso,
    formatDateTime(end_time, '%Y-%m-%dT%H:%i:%S.%fZ') AS end_time_iso,
    toString(start_time) AS start_time_text,
    latency_ms, ttft_ms, provider, model, request_model, operation, convention, server_address,
    success, error_type, status_message, input_tokens, output_tokens, cache_read_tokens,
    cache_write_tokens, reasoning_tokens, total_tokens, usage_details, input_cost_usd, output_cost_usd,
    total_cost_usd, provided_cost_usd, price_status, prompt_messages, response_messages, streaming,
    finish_reasons, temperature, top_p, max_tokens, request_parameters, user_id, session_id, tenant_id,
    service_name, environment, agent_name, agent_id, tags, labels,
    pii_found, prompt_sentiment, prompt_sentiment_label, response_sentiment, response_sentiment_label
FROM llm_inferences FINAL
WHERE project_id = {project:String} AND inference_id = {id:UUID}
LIMIT 1"""

# The span an inference came from, for its raw attributes: parameters `project`, `trace`, `span`,
# `start` (the inference's start time, which is the span's; it narrows the read to one day).
SPAN = """SELECT SpanName, SpanKind, ServiceName, ScopeName, ScopeVersion, StatusCode, StatusMessage,
    SpanAttributes, ResourceAttributes
FROM otel_traces FINAL
WHERE ProjectId = {project:String} AND TraceId = {trace:String} AND SpanId = {span:String}
    AND Timestamp = {start:DateTime64(9, 'UTC')}
LIMIT 1"""

# The project's and the model's averages over a window: parameters `project`, `model`, `from`,
# `to`. Tokens per second are output tokens over total latency; cost per token counts priced
# calls only.
AVERAGES = """SELECT
    count() AS calls,
    avgOrNull(latency_ms) AS avg_latency_ms,
    avgOrNull(ttft_ms) AS avg_ttft_ms,
    avgIfOrNull(output_tokens / (latency_ms / 1000), latency_ms > 0) AS avg_tokens_per_second,
    toFloat64(sumIf(total_cost_usd, total_cost_usd IS NOT NULL))
        / nullIf(sumIf(total_tokens, total_cost_usd IS NOT NULL), 0) AS avg_cost_per_token,
    countIf(model = {model:String}) AS model_calls,
    avgIfOrNull(latency_ms, model = {model:String}) AS model_avg_latency_ms,
    avgIfOrNull(ttft_ms, model = {model:String}) AS model_avg_ttft_ms,
    avgIfOrNull(output_tokens / (latency_ms / 1000), latency_ms > 0 AND model = {model:String})
        AS model_avg_tokens_per_second,
    toFloat64(sumIf(total_cost_usd, total_cost_usd IS NOT NULL AND model = {model:String}))
        / nullIf(sumIf(total_tokens, total_cost_usd IS NOT NULL AND model = {model:String}), 0)
        AS model_avg_cost_per_token
FROM llm_inferences FINAL
WHERE project_id = {project:String}
    AND start_time >= {from:DateTime64(9, 'UTC')} AND start_time <= {to:DateTime64(9, 'UTC')}"""


# One trace's spans, oldest first: parameters `project`, `trace`, `limit` (TRACE_MAX_SPANS + 1, to
# tell a truncated trace).
TRACE_MAX_SPANS = 2000
# The span attributes that say what a step of a trace is (`inferline.api.trace_steps`), plus
# OpenInference's document ids and scores; never content.
TRACE_STEP_ATTRIBUTES = (
    "gen_ai.operation.name",
    "openinference.span.kind",
    "langfuse.observation.type",
    "traceloop.span.kind",
    "ai.operationId",
    "mcp.method.name",
    "mcp.session.id",
    "gen_ai.tool.name",
    "gen_ai.tool.call.id",
    "tool.name",
    "gen_ai.data_source.id",
    "gen_ai.retrieval.documents",
)
_STEP_KEYS = ", ".join(f"'{k}'" for k in TRACE_STEP_ATTRIBUTES)
TRACE_SPANS = (
    """SELECT SpanId AS span_id, ParentSpanId AS parent_span_id, SpanName AS name, SpanKind AS kind,
    ServiceName AS service_name, StatusCode AS status, StatusMessage AS status_message,
    mapFilter((k, v) -> k IN ("""
    + _STEP_KEYS
    + """) OR (startsWith(k, 'retrieval.documents.')
        AND (endsWith(k, '.document.id') OR endsWith(k, '.document.score'))), SpanAttributes)
        AS step_attributes,
    length(arrayDistinct(arrayMap(k -> splitByChar('.', k)[3],
        arrayFilter(k -> startsWith(k, 'retrieval.documents.'), mapKeys(SpanAttributes))))) AS oi_documents,
    toUnixTimestamp64Nano(Timestamp) AS start_ns, Duration AS duration_ns,
    formatDateTime(Timestamp, '%Y-%m-%dT%H:%i:%S.%fZ') AS start_iso, toString(Timestamp) AS start_text
FROM otel_traces FINAL
WHERE ProjectId = {project:String} AND TraceId = {trace:String}
ORDER BY Timestamp, SpanId
LIMIT {limit:UInt32}"""
)

# The inferences of a trace's spans: parameters `project`, `trace`, `from` and `to` (the first and
# last span starts; an inference starts when its span does, so the range narrows the read).
TRACE_INFERENCES = """SELECT span_id, toString(inference_id) AS inference_id, model, provider, input_tokens,
    output_tokens, total_tokens, total_cost_usd AS cost, success AS is_success
FROM llm_inferences FINAL
WHERE project_id = {project:String} AND trace_id = {trace:String}
    AND start_time >= {from:DateTime64(9, 'UTC')} AND start_time <= {to:DateTime64(9, 'UTC')}"""

# The evaluation results of one inference: parameters `project`, `trace`, `span`, `response` (its
# response id, '' when it has none) and `session` (its session id, or ''). Results judging its span,
# naming its response id, judging its whole trace, or its session.
DETAIL_SCORES = """SELECT scope, name, value, label, explanation, evaluator, identifier, metadata, source,
    formatDateTime(timestamp, '%Y-%m-%dT%H:%i:%S.%fZ') AS timestamp
FROM scores FINAL
WHERE project_id = {project:String} AND (
    (scope = 'span' AND trace_id = {trace:String} AND span_id = {span:String})
    OR (scope = 'span' AND {response:String} != '' AND response_id = {response:String})
    OR (scope = 'trace' AND trace_id = {trace:String})
    OR (scope = 'session' AND {session:String} != '' AND session_id = {session:String}))
ORDER BY scope = 'span' DESC, scope, name, timestamp
LIMIT 500"""

# Evaluation results per name, model and label over the inferences `where` selects (the analytics
# filters). A span-scoped result counts for the call whose span it judges, else for the call its
# response id names (as the list filter and the detail match them); once, whatever matched.
SCORES_BY_MODEL = """SELECT name, model, label, count() AS results, count(value) AS scored,
    sum(value) AS value_sum, min(value) AS value_min, max(value) AS value_max
FROM (
    SELECT s.result, s.name AS name, s.label AS label, s.value AS value, i.model AS model
    FROM (
        SELECT model, arrayJoin(arrayFilter(k -> k != '', [concat('s:', toString(inference_id)),
            if(response_id = '', '', concat('r:', response_id))])) AS score_key
        FROM llm_inferences FINAL WHERE {where}
    ) AS i
    INNER JOIN (
        SELECT name, label, value,
            cityHash64(trace_id, span_id, response_id, source, evaluator, identifier) AS result,
            arrayJoin(arrayFilter(k -> k != '', [if(span_id = '', '', concat('s:', toString(inference_id))),
                if(response_id = '', '', concat('r:', response_id))])) AS score_key
        FROM scores FINAL
        WHERE project_id = {{project:String}} AND scope = 'span'
    ) AS s USING score_key
    ORDER BY s.result, startsWith(score_key, 's:') DESC
    LIMIT 1 BY s.result, s.name
)
GROUP BY name, model, label
ORDER BY name, model, label
LIMIT 100000"""
