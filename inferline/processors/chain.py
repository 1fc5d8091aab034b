"""The processor stage: normalise GenAI spans into inference rows, turn spans and logs into
their table rows, then run the configured enrichment chain (pricing, PII, sentiment, ...).

The same object runs in the embedded service and in the Kafka processor role.
"""

from __future__ import annotations

from typing import Any

import structlog

from inferline.core.config import ProcessorSettings
from inferline.core.errors import ConfigError
from inferline.core.records import Batch, LogRecord, ScoreCarrier, Span
from inferline.processors.base import Processor
from inferline.processors.conventions.field_sources import DEFAULT_TENANT_KEYS
from inferline.processors.normalise import GenAINormaliser
from inferline.processors.otel_rows import log_row, trace_rows
from inferline.processors.scores import bound_score_texts, scores

log = structlog.get_logger()


def build_processor(
    name: str, options: dict[str, Any], tenant_keys: tuple[str, ...] = DEFAULT_TENANT_KEYS
) -> Processor:
    """The registry of enrichment stages, by the name used in the `processors.chain` setting.
    `tenant_keys`: the attributes the normaliser reads `tenant_id` from (the PII stage masks that
    column when one of them is configured to be masked)."""
    if name == "pricing":
        from inferline.processors.pricing import Pricer, PricingConfig

        return Pricer(PricingConfig.model_validate(options))
    if name == "pii":
        from inferline.processors.pii import PiiMasker
        from inferline.processors.pii_config import PiiConfig

        return PiiMasker(PiiConfig.model_validate(options), tenant_keys)
    if name == "sentiment":
        from inferline.processors.sentiment import SentimentProcessor
        from inferline.processors.sentiment_config import SentimentConfig

        return SentimentProcessor(SentimentConfig.model_validate(options))
    raise ConfigError(f"unknown processor {name!r} in processors.chain (known: pricing, pii, sentiment)")


class ProcessorChain:
    def __init__(self, settings: ProcessorSettings | None = None) -> None:
        settings = settings or ProcessorSettings()
        self._settings = settings
        normaliser_options: dict[str, Any] = {"join_window_s": settings.join_window_s}
        if settings.tenant_keys:
            normaliser_options["tenant_keys"] = tuple(settings.tenant_keys)
        self.normaliser = GenAINormaliser(**normaliser_options)
        self.stages: list[Processor] = []
        for name in settings.chain:
            options = getattr(settings, name, None) or {}
            if options.get("enabled", True) is False:
                continue
            self.stages.append(build_processor(name, options, self.normaliser.tenant_keys))

    def fresh(self) -> ProcessorChain:
        """The same chain with an empty memory (the normaliser's join)."""
        return ProcessorChain(self._settings)

    def run(self, spans: list[Span], logs: list[LogRecord], received_at: float = 0.0) -> Batch:
        """The rows of these records, through every stage. `received_at`: when the latest of them
        was received (unix s; 0: unknown, now)."""
        carriers: list[ScoreCarrier] = []
        batch = Batch(
            inferences=self.normaliser.normalise(spans, logs, received_at),
            spans=trace_rows(spans),
            logs=[log_row(r) for r in logs],
            scores=scores(spans, logs, carriers),
            score_carriers=carriers,
            calls_remembered_since=self.normaliser.calls_remembered_since(),
        )
        for stage in self.stages:
            stage.process(batch)
        bound_score_texts(batch.scores)  # after the stages: the PII stage sees the whole text
        return batch
