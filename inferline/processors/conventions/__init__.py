"""The parts of `inferline.processors.normalise`, the GenAI normaliser.

- One module per convention family: `otel_genai`, `openinference`, `openllmetry`, `openlit`,
  `vercel_ai`, `langfuse`, `langsmith`.
- Cross-convention fields, each read from every family's attributes in priority order
  (`field_sources`): `usage` (tokens, provided cost), `timing` (streaming, time to first token),
  `attribution` (user, session, tenant, environment, tags), `row_messages` (prompt, response,
  finish reasons).
- Shared parsing: `values` (lenient numbers and JSON), `messages` (message shapes), `key_scan`
  (indexed and prefixed attribute keys), `span_events`, and `classify` (which spans are model calls).
- `content_join`: content that arrives in log records, joined to its span before or after it.
"""
