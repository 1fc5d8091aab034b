"""Distributed mode: one role per process (or all of them), Kafka as the bus between stages.

    receiver   OTLP gRPC + HTTP → raw topics (inferline.exporters.kafka.raw)
    processor  raw topics → ProcessorChain → enriched topics (inferline.service.processor_role)
    writer     enriched topics → ClickHouse (inferline.service.writer_role); also serves the API port
               (read-only SQL), since it is the one process that owns a chDB store

Every role serves /healthz, /readyz and /metrics on the API port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import structlog
import uvicorn

from inferline.api.app import health_app, with_api_headers
from inferline.api.metrics_access import MetricsAccess
from inferline.core.config import Settings
from inferline.core.memory import observe_collector_pauses, settle_after_start
from inferline.kafka.clients import ensure_topics
from inferline.receivers.otlp.admission import receiver_admission
from inferline.service.embedded import http_server, time_window
from inferline.service.shutdown import Deadline, stop_on_signals
from inferline.storage.keys import AnyKeys, ApiKeys, StaticKeys

log = structlog.get_logger()

ROLES = ("receiver", "processor", "writer", "all")


def _static_keys(settings: Settings) -> StaticKeys:
    return StaticKeys.parse(settings.api_keys, settings.api_keys_file)


def _server(app: Any, settings: Settings, port: int) -> uvicorn.Server:
    return http_server(app, settings.host, port, settings.shutdown_timeout_s / 2)


async def run_role(settings: Settings, role: str, stop: asyncio.Event | None = None) -> None:
    if role not in ROLES:
        raise SystemExit(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    bootstrap = settings.kafka_bootstrap_servers
    if not bootstrap:
        raise SystemExit(f"--role {role} needs KAFKA_BOOTSTRAP_SERVERS (distributed mode runs on Kafka)")
    ks = settings.kafka
    stop = stop or asyncio.Event()
    stop_on_signals(stop)

    receives = role in ("receiver", "all")
    processes = role in ("processor", "all")
    writes = role in ("writer", "all")
    topics: dict[str, int] = {}
    if receives or processes:
        topics |= {ks.raw_spans_topic: ks.raw_partitions, ks.raw_logs_topic: ks.raw_partitions}
    if processes or writes:
        enriched = (ks.inferences_topic, ks.spans_topic, ks.logs_topic, ks.scores_topic)
        topics |= {t: ks.enriched_partitions for t in enriched}
        topics[ks.dlq_topic] = topics[ks.ledger_topic] = 1
    await ensure_topics(ks, bootstrap, topics)

    # Stages stop after the receivers: what was accepted is handed on before the process exits.
    workers_stop = asyncio.Event()
    workers: list[asyncio.Task[None]] = []
    ready: list[Callable[[], bool]] = []
    servers: list[uvicorn.Server] = []
    closers: list[Callable[[], Any]] = []
    stoppers: list[Callable[[], Awaitable[None]]] = []  # background components, stopped before the closers
    grpc_server = None
    sink = None
    admission = None
    url, database = settings.resolved_clickhouse_url, settings.clickhouse_database
    # What the receivers' memory ceiling may ask to hand back memory (the engine's, the workers').
    reclaimers: list[Callable[[], object]] = []
    # Every role's /metrics takes the same token, so one Prometheus credential scrapes them all.
    metrics_access = MetricsAccess.of(
        settings.metrics_token.get_secret_value(), settings.admin_key.get_secret_value()
    )

    if writes:
        from inferline.api.app import api_app
        from inferline.api.deps import ApiContext, admin_digest
        from inferline.api.erasure import Eraser
        from inferline.api.sql import ReadOnlySql
        from inferline.service.embedded import alerting
        from inferline.service.feedback import insert_feedback
        from inferline.service.writer_role import WriterRole
        from inferline.storage.clickhouse import connect, release_engine_memory
        from inferline.storage.retention import apply_configured_retention
        from inferline.storage.schema import migrate
        from inferline.ui.app import add_dashboard

        client = connect(url, database)
        migrate(client, database, settings.retention_days)  # the writer owns the schema
        apply_configured_retention(client, settings)
        writer = WriterRole(settings, bootstrap, client)
        workers.append(asyncio.create_task(writer.run(workers_stop), name="writer"))
        ready.append(lambda: writer.ready and writer.healthy)
        sql = ReadOnlySql(url, database, **settings.sql.model_dump())
        stored_keys = ApiKeys(connect(url, database), database)
        api_keys = AnyKeys(_static_keys(settings), stored_keys)
        # Feedback reaches no topic: this process inserts it, with a client of its own.
        feedback_client = connect(url, database)
        erase_client = connect(url, database)  # GDPR erasure: deletes, with a client of its own
        # Rules are evaluated and webhooks sent here: the writer owns the store. With several
        # writers, set INFERLINE_ALERTS__ENABLED=false on all but one (docs/alerts.md).
        alerts = alerting(settings)
        alerts.start()
        stoppers.append(alerts.stop)
        context = ApiContext(
            keys=api_keys,
            sql=sql,
            database=database,
            alerts=alerts,
            write_feedback=insert_feedback(
                settings.processors, feedback_client, database, alerts.feedback_stored
            ),
            # The admin API manages the api_keys table; static keys stay in configuration.
            admin_key_sha256=admin_digest(settings.admin_key.get_secret_value()),
            key_admin=stored_keys,
            eraser=Eraser(erase_client, database),
        )
        servers.append(
            _server(
                with_api_headers(
                    add_dashboard(
                        api_app(api_keys, sql, lambda: all(r() for r in ready), metrics_access, context)
                    )
                ),
                settings,
                settings.api_port,
            )
        )
        memory_client = connect(url, database)
        reclaimers.append(partial(release_engine_memory, memory_client, url))
        closers += [
            sql.close,
            client.close,
            feedback_client.close,
            erase_client.close,
            memory_client.close,
            alerts.close,
        ]
    else:
        servers.append(
            _server(
                with_api_headers(health_app(lambda: all(r() for r in ready), metrics_access)),
                settings,
                settings.api_port,
            )
        )

    if processes:
        from inferline.service.processor_role import ProcessorRole

        processor = ProcessorRole(settings, bootstrap)
        workers.append(asyncio.create_task(processor.run(workers_stop), name="processor"))
        ready.append(lambda: processor.ready)
        reclaimers.append(processor.reclaim)

    if receives:
        from inferline.exporters.kafka.raw import KafkaRawExporter
        from inferline.receivers.otlp.grpc import otlp_grpc_server
        from inferline.receivers.otlp.http import otlp_http_app

        static = _static_keys(settings)
        if settings.clickhouse_url.startswith(("http://", "https://")):
            from inferline.storage.clickhouse import connect

            keys: Any = AnyKeys(static, ApiKeys(connect(settings.clickhouse_url, database), database))
        elif static.is_empty():
            raise SystemExit(
                "the receiver needs API keys: set INFERLINE_API_KEYS (key=project,...) or "
                "INFERLINE_API_KEYS_FILE, or CLICKHOUSE_URL of a ClickHouse server holding the api_keys table"
            )
        else:
            keys = static
        sink = KafkaRawExporter(ks, bootstrap, time_window(settings))
        sink.start()
        ready.append(lambda: sink.ready)
        front: Any = sink
        if settings.mask_at_receiver:  # unmasked content never reaches the raw topics
            from inferline.processors.mask_request import MaskingSink
            from inferline.processors.pii import PiiMasker
            from inferline.processors.pii_config import PiiConfig

            front = MaskingSink(sink, PiiMasker(PiiConfig.model_validate(settings.processors.pii)))
        admission = receiver_admission(settings, reclaimers)  # shared by both receivers
        grpc_server = otlp_grpc_server(
            front, keys, f"{settings.host}:{settings.grpc_port}", settings.max_request_bytes, admission
        )
        await grpc_server.start()
        servers.append(
            _server(
                otlp_http_app(
                    front,
                    keys,
                    settings.max_request_bytes,
                    admission,
                    body_idle_timeout_s=settings.body_idle_timeout_s,
                ),
                settings,
                settings.http_port,
            )
        )

    serving = [asyncio.create_task(s.serve()) for s in servers]
    settle_after_start()  # what building the stages freed goes back; the rest out of the collector's walks
    observe_collector_pauses()
    if admission is not None and admission.memory is not None:
        admission.memory.report_at_start()
    log.info(
        "inferline started",
        mode="distributed",
        role=role,
        kafka=bootstrap,
        otlp_grpc=settings.grpc_port if receives else None,
        otlp_http=settings.http_port if receives else None,
        api=settings.api_port,
    )
    stopped = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopped, *serving, *workers], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not stopped and not task.cancelled() and task.exception() is not None:
            log.error("a stage failed; stopping", task=task.get_name(), error=repr(task.exception())[:300])

    deadline = Deadline(settings.shutdown_timeout_s)  # exits the process if the steps below hang
    log.info("stopping: finishing accepted requests", deadline_s=settings.shutdown_timeout_s)
    for s in servers[1:]:  # OTLP HTTP with gRPC; the API port last
        s.should_exit = True
    if grpc_server is not None:
        await grpc_server.stop(grace=deadline.fraction(0.5))
    await asyncio.gather(*serving[1:], return_exceptions=True)
    if sink is not None:
        await sink.close()
    workers_stop.set()
    results = await asyncio.gather(*workers, return_exceptions=True)
    for stop_component in stoppers:
        await stop_component()
    servers[0].should_exit = True
    await asyncio.gather(*serving, return_exceptions=True)
    for close in closers:
        close()
    failed = [r for r in results if isinstance(r, BaseException)]
    log.info("stopped")
    if failed:
        raise SystemExit(1)
