"""A store with the alert tables, calls written straight into llm_inferences (the rollup views
take them as they take the pipeline's inserts), and a webhook receiver on loopback."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from inferline.storage.clickhouse import connect
from inferline.storage.schema import migrate


def store_client(path: Path) -> Client:
    client = connect(f"chdb://{path / 'clickhouse'}")
    migrate(client)
    return client


@contextlib.contextmanager
def opened_store(path: Path) -> Iterator[Client]:
    """A migrated store, closed afterwards (chDB opens one path per process at a time)."""
    client = store_client(path)
    try:
        yield client
    finally:
        client.close()


def insert_calls(
    client: Client,
    minute: datetime,
    latencies_ms: list[float],
    *,
    project: str = "default",
    model: str = "gpt-4o-mini",
    provider: str = "openai",
    success: bool = True,
    cost: float = 0.001,
    tokens: int = 100,
    tenant: str = "",
    tags: dict[str, str] | None = None,
) -> None:
    """One call per latency, spread over the seconds of `minute`."""
    rows = []
    for i, latency in enumerate(latencies_ms):
        start = minute + timedelta(seconds=i % 60, microseconds=i)
        rows.append(
            [
                project,
                str(uuid.uuid4()),
                start,
                start + timedelta(milliseconds=latency),
                latency,
                provider,
                model,
                model,
                success,
                tokens,
                tokens,
                Decimal(str(cost)),
                tenant,
                tags or {},
                1,
            ]
        )
    client.insert(
        "llm_inferences",
        rows,
        column_names=[
            "project_id",
            "inference_id",
            "start_time",
            "end_time",
            "latency_ms",
            "provider",
            "model",
            "request_model",
            "success",
            "output_tokens",
            "total_tokens",
            "total_cost_usd",
            "tenant_id",
            "tags",
            "version",
        ],
    )


class Receiver:
    """A webhook endpoint on loopback: records every request; answers `status` (settable), after
    `delay_s` (an endpoint slow to answer; `close` cuts the wait short)."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.delay_s = 0.0
        self._closing = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.requests.append(
                    {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                )
                if receiver.delay_s:
                    receiver._closing.wait(receiver.delay_s)
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["headers"].get("inferline-event-type") == event_type]


def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()
