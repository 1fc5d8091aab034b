"""Starting and stopping the all-in-one (embedded) service: OTLP gRPC and HTTP receivers, the
processor chain, the batch writer and the API port, in one process and one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
from collections.abc import Generator
from functools import partial
from typing import Any

import structlog
import uvicorn

from inferline.alerts.component import Alerting
from inferline.alerts.store import AlertStore
from inferline.api.app import api_app, with_api_headers
from inferline.api.deps import ApiContext, admin_digest
from inferline.api.erasure import Eraser
from inferline.api.metrics_access import METRICS_TOKEN_FILE, MetricsAccess, ensure_metrics_token
from inferline.api.sql import ReadOnlySql
from inferline.core.config import Settings
from inferline.core.consumer import Sink
from inferline.core.memory import observe_collector_pauses, settle_after_start
from inferline.core.records import Batch
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.exporters.clickhouse.new_inferences import NewInferences, calls_remembered_since_store
from inferline.otlp.validate import TimeWindow
from inferline.processors.chain import ProcessorChain
from inferline.processors.mask_request import MaskingSink
from inferline.processors.pii import PiiMasker
from inferline.processors.pii_config import PiiConfig
from inferline.receivers.otlp.admission import receiver_admission
from inferline.receivers.otlp.grpc import otlp_grpc_server
from inferline.receivers.otlp.http import decode_json_here, otlp_http_app
from inferline.receivers.otlp.memory import Reclaimer
from inferline.service.data_dir_lock import hold_data_dir
from inferline.service.embedded_pipeline import EmbeddedEngine
from inferline.service.feedback import WriteFeedback, insert_feedback
from inferline.service.json_intake import WorkerJsonIntake
from inferline.service.processing import native_blocks
from inferline.service.shutdown import Deadline, stop_on_signals
from inferline.service.workers import InThread, WorkerProcesses
from inferline.storage.clickhouse import connect, release_engine_memory
from inferline.storage.keys import DEFAULT_KEY_FILE, ApiKeys, ensure_default_key
from inferline.storage.retention import apply_configured_retention
from inferline.storage.schema import migrate
from inferline.ui.app import add_dashboard

log = structlog.get_logger()


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service stops all servers together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


MAX_CONNECTIONS = 4096  # per HTTP port
# Idle keep-alive connections stay open this long (uvicorn's default is 5 s). A server that closes
# an idle connection first races the client's next request on it, which then fails with a reset
# (the bench saw httpx `ReadError`s: httpx also gives up idle connections after 5 s); clients'
# pools drop idle connections sooner than this (httpx 5 s, Go 90 s, nginx upstreams 60 s), as
# nginx's 75 s default assumes.
KEEP_ALIVE_S = 75


def http_server(app: Any, host: str, port: int, grace_s: float = 10) -> uvicorn.Server:
    """An HTTP server for one of our ASGI apps: no access log, no lifespan, graceful stop (requests
    in flight get `grace_s` to finish)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=max(1, math.ceil(grace_s)),
        # Connections are not covered by the in-flight byte budget (an idle keep-alive holds
        # none), so they get a cap of their own: past it, 503 (retryable) instead of growing.
        limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    return _Server(config)


def api_context(
    settings: Settings,
    keys: ApiKeys,
    sql: ReadOnlySql,
    write_feedback: WriteFeedback | None = None,
    eraser: Eraser | None = None,
    alerts: Alerting | None = None,
) -> ApiContext:
    return ApiContext(
        keys=keys,
        sql=sql,
        database=settings.clickhouse_database,
        admin_key_sha256=admin_digest(settings.admin_key.get_secret_value()),
        key_admin=keys,
        write_feedback=write_feedback,
        eraser=eraser,
        alerts=alerts,
    )


def embedded_metrics_access(settings: Settings) -> MetricsAccess:
    """The configured metrics token, else the one kept in the data directory (made on first
    start), and the admin key."""
    token = settings.metrics_token.get_secret_value() or ensure_metrics_token(settings.data_dir)
    return MetricsAccess.of(token, settings.admin_key.get_secret_value())


def alerting(settings: Settings) -> Alerting:
    """Alert rules and webhooks, with a client of their own (started with `start()`)."""
    url, database = settings.resolved_clickhouse_url, settings.clickhouse_database
    return Alerting(AlertStore(connect(url, database), database), settings.alerts, settings.webhooks)


def time_window(settings: Settings) -> TimeWindow:
    """The times the tables can keep, from the retention settings: a span lands in otel_traces
    and (as an inference) in llm_inferences, so it must be within both."""
    days = settings.retention.days(settings.retention_days)
    return TimeWindow(
        spans_days=min(days["spans"], days["inferences"]),
        logs_days=days["logs"],
        longest_days=max(days.values()),
    )


def raw_inference_days(settings: Settings) -> int:
    """How long `llm_inferences` keeps its rows (rollups may keep theirs longer)."""
    return settings.retention.days(settings.retention_days)["inferences"]


def print_first_key(key: str, settings: Settings) -> None:
    """The one time the default key is shown (it is also kept, owner-only, in the data dir)."""
    path = settings.data_dir / DEFAULT_KEY_FILE
    print(
        "\n  Created project 'default' and its API key (kept in "
        f"{path}):\n\n      {key}\n\n"
        f"  Send OTLP with:  OTEL_EXPORTER_OTLP_HEADERS='x-api-key={key}'\n"
        + (
            ""
            if settings.metrics_token.get_secret_value()
            else f"  Prometheus reads /metrics with the token in {settings.data_dir / METRICS_TOKEN_FILE}\n"
        ),
        file=sys.stdout,
        flush=True,
    )


async def run_embedded(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    stop_on_signals(stop)

    chain = ProcessorChain(settings.processors)  # first: a configuration mistake stops us before any I/O
    data_dir_lock = hold_data_dir(settings.data_dir)  # then: not while another process has the files
    processing: InThread[Batch] | WorkerProcesses[Batch]
    if settings.resolved_workers:
        del chain  # each worker builds its own
        processing = WorkerProcesses(
            settings.processors,
            settings.resolved_workers,
            native_blocks,
            settings.log_level,
            settings.max_queue_wait_s,
            # One JSON decoder per four workers: one core decodes ~20k JSON spans/s here.
            json_decoders=max(1, settings.resolved_workers // 4),
        )
    else:
        processing = InThread(chain, native_blocks)
    starting = asyncio.create_task(processing.start())  # meanwhile: migrations, keys
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url, database = settings.resolved_clickhouse_url, settings.clickhouse_database
    write_client = connect(url, database)
    migrate(write_client, database, settings.retention_days)
    apply_configured_retention(write_client, settings)  # per-table TTLs, docs/schema.md#retention
    # Before anything of ours is inserted: calls that started after every stored one need no look-up.
    remembered_since = calls_remembered_since_store(write_client, database)
    keys = ApiKeys(connect(url, database), database)
    first_key = ensure_default_key(keys, settings.data_dir)
    if first_key:
        print_first_key(first_key, settings)

    await starting
    await processing.assume_calls_remembered_since(remembered_since)
    engine = EmbeddedEngine(
        settings.data_dir,
        processing,
        Inserter(write_client, database, recount_rollups_within_days=raw_inference_days(settings)),
        settings.batch,
        settings.local_log,
        time_window(settings),
        # A sender's retry later than the join window: its calls are not stored (counted) twice.
        NewInferences(write_client, database),
    )
    engine.start()
    sink: Sink = engine.sink
    json_intake = None
    if settings.mask_at_receiver:
        sink = MaskingSink(sink, PiiMasker(PiiConfig.model_validate(settings.processors.pii)))
    elif isinstance(processing, WorkerProcesses):
        json_intake = WorkerJsonIntake(processing, engine.sink)
    sql = ReadOnlySql(url, database, **settings.sql.model_dump())
    alerts = alerting(settings)
    feedback_client = connect(url, database)
    write_feedback = insert_feedback(settings.processors, feedback_client, database, alerts.feedback_stored)
    erase_client = connect(url, database)  # GDPR erasure: deletes, with a client of its own
    context = api_context(settings, keys, sql, write_feedback, Eraser(erase_client, database), alerts)

    # Past the memory ceiling, the workers and the engine hand back what they hold but no longer use.
    memory_client = connect(url, database)
    reclaimers: list[Reclaimer] = [partial(release_engine_memory, memory_client, url)]
    if isinstance(processing, WorkerProcesses):
        reclaimers.append(processing.reclaim)
    admission = receiver_admission(settings, reclaimers)  # shared by both receivers
    grpc_server = otlp_grpc_server(
        sink, keys, f"{settings.host}:{settings.grpc_port}", settings.max_request_bytes, admission
    )
    await grpc_server.start()
    http_servers = [
        http_server(app, settings.host, port, settings.shutdown_timeout_s / 2)
        for app, port in (
            (
                otlp_http_app(
                    sink,
                    keys,
                    settings.max_request_bytes,
                    admission,
                    processing.decode_json if isinstance(processing, WorkerProcesses) else decode_json_here,
                    json_intake,
                    body_idle_timeout_s=settings.body_idle_timeout_s,
                ),
                settings.http_port,
            ),
            (
                with_api_headers(
                    add_dashboard(
                        api_app(keys, sql, lambda: engine.healthy, embedded_metrics_access(settings), context)
                    )
                ),
                settings.api_port,
            ),
        )
    ]
    serving = [asyncio.create_task(s.serve()) for s in http_servers]
    alerts.start()
    settle_after_start()  # what starting freed goes back (~190 MB); the rest out of the collector's walks
    observe_collector_pauses()
    if admission.memory is not None:
        admission.memory.report_at_start()
    log.info(
        "inferline started",
        mode="embedded",
        workers=settings.resolved_workers,
        otlp_grpc=settings.grpc_port,
        otlp_http=settings.http_port,
        api=settings.api_port,
        clickhouse=url.split("@")[-1],
    )
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([stopped, *serving], return_when=asyncio.FIRST_COMPLETED)

    deadline = Deadline(settings.shutdown_timeout_s)  # exits the process if the steps below hang
    log.info("stopping: finishing accepted requests", deadline_s=settings.shutdown_timeout_s)
    engine.pipeline.drain()
    await alerts.stop(timeout_s=deadline.fraction(0.2))
    otlp_http, api = http_servers
    otlp_http.should_exit = True
    await grpc_server.stop(grace=deadline.fraction(0.3))
    await asyncio.gather(serving[0], return_exceptions=True)
    # What the log holds is stored now if it can be; the rest is replayed at the next start.
    await engine.close(timeout_s=max(deadline.remaining() - 3.0, 1.0))
    api.should_exit = True  # last: /metrics and /readyz answer while the process drains
    await asyncio.gather(*serving, return_exceptions=True)
    processing.close()
    sql.close()
    feedback_client.close()
    erase_client.close()
    memory_client.close()
    alerts.close()
    write_client.close()
    data_dir_lock.close()
    log.info("stopped")
