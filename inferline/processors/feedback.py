"""Feedback comments get what prompts get: PII masking with the service's PII configuration, then
sentiment with its sentiment scorer (masked text, as in the default chain). The stages follow the
processor chain's settings: a stage the chain leaves out or disables is left out here too."""

from __future__ import annotations

from inferline.core.config import ProcessorSettings
from inferline.core.records import Row
from inferline.processors.pii import PiiMasker
from inferline.processors.pii_config import PiiConfig
from inferline.processors.sentiment import SentimentScorer
from inferline.processors.sentiment_config import SentimentConfig

# Free-text fields of a feedback row that may carry PII.
_TEXT_FIELDS = ("comment", "demonstration")


class FeedbackEnricher:
    def __init__(self, masker: PiiMasker | None, scorer: SentimentScorer | None) -> None:
        self._masker = masker
        self._scorer = scorer

    @classmethod
    def from_settings(cls, settings: ProcessorSettings) -> FeedbackEnricher:
        masker = scorer = None
        pii = PiiConfig.model_validate(settings.pii)
        if "pii" in settings.chain and pii.enabled:
            masker = PiiMasker(pii)
        sentiment = SentimentConfig.model_validate(settings.sentiment)
        if "sentiment" in settings.chain and sentiment.enabled:
            scorer = SentimentScorer(max_chars=sentiment.max_chars, domain=sentiment.domain_rules)
        return cls(masker, scorer)

    def process(self, rows: list[Row]) -> None:
        """Masks and scores `rows` in place."""
        for row in rows:
            if self._masker is not None:
                counts: dict[str, int] = {}
                for name in _TEXT_FIELDS:
                    text = row.get(name) or ""
                    if text:
                        row[name], found = self._masker.mask_text(text)
                        for pii_type, n in found.items():
                            counts[pii_type] = counts.get(pii_type, 0) + n
                row["pii_found"] = counts
            comment = row.get("comment") or ""
            if self._scorer is not None and comment:
                row["comment_sentiment"], row["comment_sentiment_label"] = self._scorer.score(comment)
