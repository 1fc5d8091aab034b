"""Per-family readers of GenAI telemetry conventions, used by `processors.normalise`.

One module per convention family; `values` and `messages` are the shared lenient parsers;
`classify` decides which spans are model calls.
"""
