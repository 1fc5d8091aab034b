"""How the API's feedback rows reach ClickHouse: masked and scored (inferline.processors.feedback),
then inserted. `insert_feedback` returns the `ApiContext.write_feedback` callable, which returns
only once the rows are committed and raises `Retryable` when they could not be."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from inferline.core.config import ProcessorSettings
from inferline.core.errors import Unavailable
from inferline.core.logging import error_summary
from inferline.core.records import Batch, Row
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.processors.feedback import FeedbackEnricher

log = structlog.get_logger()

WriteFeedback = Callable[[list[Row]], Awaitable[None]]


def insert_feedback(
    processors: ProcessorSettings,
    client: Any,
    database: str,
    on_stored: Callable[[list[Row]], Awaitable[None]] | None = None,
) -> WriteFeedback:
    """Both modes: feedback reaches no log or topic; the process that owns the store inserts it
    at once, with a client of its own, and answers only once it is stored. The dedup token is made
    of the feedback ids, so an insert retried after an unclear failure is dropped by ClickHouse.
    `on_stored` gets the rows as stored (masked, scored): the webhooks' `feedback.created`."""
    enricher = FeedbackEnricher.from_settings(processors)
    inserter = Inserter(client, database)
    executor = ThreadPoolExecutor(1, thread_name_prefix="feedback-insert")  # one client, one user

    async def write(rows: list[Row]) -> None:
        enricher.process(rows)
        ids = ",".join(sorted(str(r["feedback_id"]) for r in rows))
        token = "feedback:" + hashlib.sha256(ids.encode()).hexdigest()[:32]
        try:
            await asyncio.get_running_loop().run_in_executor(
                executor, inserter.insert, Batch(feedback=rows), token
            )
        except Exception as e:
            log.error("feedback insert failed", rows=len(rows), error=error_summary(e))
            raise Unavailable("storage unavailable, retry later") from None
        if on_stored is not None:
            await on_stored(rows)

    return write
