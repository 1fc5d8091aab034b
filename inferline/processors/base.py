"""The one interface every enrichment stage implements."""

from __future__ import annotations

from typing import Protocol

from inferline.core.records import Batch


class Processor(Protocol):
    """An enrichment stage: mutates the rows of a batch in place.

    Processors must not raise for one bad row: they mark the row (for example
    `price_status = 'error'`) and go on, so one record never costs the rest of a batch.
    """

    name: str

    def process(self, batch: Batch) -> None: ...
