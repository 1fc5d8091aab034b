"""structlog JSON logs on stderr, for our own logs and the libraries' (uvicorn, grpc).

Logs never carry prompt content or API keys: stages log ids, counts and error *kinds* only
(`error_summary`), because a database error message can quote the row that failed.
"""

from __future__ import annotations

import logging
import re
import sys

import structlog
from structlog.typing import Processor

_CODE = re.compile(r"Code: (\d+)")


def error_summary(e: BaseException) -> str:
    """`DatabaseError (ClickHouse code 241)`: what failed, without the message text."""
    match = _CODE.search(str(e))
    return f"{type(e).__name__} (ClickHouse code {match.group(1)})" if match else type(e).__name__


def configure_logging(level: str = "info") -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # uvicorn's access log would print every OTLP request; keep its warnings and errors.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
