"""inferline: OTLP in, priced and masked LLM inferences in ClickHouse."""

from pathlib import Path

from inferline.core.compiled import refuse_stale_extensions

refuse_stale_extensions(Path(__file__).parent)
