"""Service configuration: environment variables (prefix `INFERLINE_`), optionally a YAML file.

pydantic-settings validates everything at start, so a typo fails loudly before a port opens.
`CLICKHOUSE_URL` and `KAFKA_BOOTSTRAP_SERVERS` are also read without the prefix because that is
how the rest of the ecosystem spells them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from inferline.core.memory import memory_limit_bytes


class BatchSettings(BaseModel):
    # Each insert has a fixed cost (a part per table and rollup view, their merges), so under load
    # flushes are let grow to ~10k GenAI spans (from ~3k at 10k rows / 1 s): 7% less CPU per span
    # in four alternated bench pairs, for ~100 MB more at the peak (docs/performance.md).
    max_rows: int = Field(30_000, ge=1, description="flush a table's batch at this many rows")
    # Between the two, a batch waits ~4x as long as recent inserts took (storage/flush_policy.py):
    # data queryable quickly where inserts are cheap, few inserts where they are dear.
    min_delay_s: float = Field(0.05, gt=0, description="shortest wait for a batch to fill")
    max_delay_s: float = Field(2.5, gt=0, description="longest wait for a batch to fill")
    max_pending_rows: int = Field(
        50_000, ge=1, description="rows gathered for storage past which consumers wait for a flush"
    )


class LocalLogSettings(BaseModel):
    """Embedded mode's durable point (`data_dir/log/`): what senders were acknowledged for and
    ClickHouse does not have yet. See docs/architecture.md."""

    max_bytes: int = Field(
        1 << 30, ge=1 << 20, description="bytes not yet stored past which receivers refuse (429)"
    )
    read_entries: int = Field(8, ge=1, description="entries (requests) a worker processes at once")


class ProjectRateLimit(BaseModel):
    """One project's own limits; unset fields take the defaults of `RateLimitSettings`."""

    spans_per_s: float | None = Field(None, ge=0)
    logs_per_s: float | None = Field(None, ge=0)


class RateLimitSettings(BaseModel):
    """Per-project ingest rates (token buckets in each receiver process; 0 = no limit). Past
    them a request gets 429 / RESOURCE_EXHAUSTED with the time until it fits again."""

    spans_per_s: float = Field(0, ge=0, description="spans per second per project")
    logs_per_s: float = Field(0, ge=0, description="log records per second per project")
    burst_s: float = Field(2.0, gt=0, description="bucket size, in seconds of the rate")
    projects: dict[str, ProjectRateLimit] = Field(default_factory=dict, description="per-project overrides")


class RetentionSettings(BaseModel):
    """Days each kind of table keeps its rows (its TTL), applied at every start by
    inferline.storage.retention; unset means `retention_days`. See docs/schema.md#retention."""

    spans_days: int | None = Field(None, ge=1, description="otel_traces")
    logs_days: int | None = Field(None, ge=1, description="otel_logs")
    inferences_days: int | None = Field(None, ge=1, description="llm_inferences")
    feedback_days: int | None = Field(None, ge=1, description="feedback")
    rollups_days: int | None = Field(None, ge=1, description="tables named *_by_minute, *_by_hour, *_by_day")
    # A changed TTL is materialized by recalculating each part's expiry (cheap: reads the time
    # column only); off, old parts keep the expiry they were written with until they merge.
    materialize: bool = True

    def days(self, fallback: int) -> dict[str, int]:
        """Days per kind of table: spans, logs, inferences, feedback, rollups."""
        kinds = ("spans", "logs", "inferences", "feedback", "rollups")
        return {k: getattr(self, f"{k}_days") or fallback for k in kinds}


class SqlSettings(BaseModel):
    """Limits of one query on the read-only SQL endpoint, so no query can take the engine down."""

    max_execution_s: int = Field(30, ge=1)
    max_memory_bytes: int = Field(2 << 30, ge=1 << 20)
    max_result_bytes: int = Field(256 << 20, ge=1 << 10)


class AlertSettings(BaseModel):
    """Alert rules per project (docs/alerts.md), evaluated by the process that owns the store
    (embedded service, writer role)."""

    enabled: bool = Field(True, description="evaluate rules and send webhooks in this process")
    evaluate_every_s: float = Field(
        60.0, ge=0.1, description="60: once a minute, after the minute; shorter only for tests"
    )
    max_rules_per_project: int = Field(100, ge=1)


class WebhookSettings(BaseModel):
    """Webhook deliveries: who may be called, how long and how often a delivery is retried."""

    allow_private_addresses: bool = Field(
        False, description="allow loopback, private and link-local targets (server-side request forgery)"
    )
    timeout_s: float = Field(10.0, gt=0, description="one delivery attempt")
    backoff_s: float = Field(10.0, gt=0, description="first retry's wait, doubled each time")
    max_backoff_s: float = Field(3600.0, gt=0)
    retry_for_s: float = Field(86400.0, gt=0, description="after this long an undelivered event fails")
    poll_s: float = Field(2.0, gt=0, description="how often the outbox is read")
    max_pending: int = Field(
        10_000, ge=1, description="waiting deliveries per project; past it new ones drop"
    )
    max_per_project: int = Field(10, ge=1)


class ProcessorSettings(BaseModel):
    """The enrichment chain after normalisation: order and per-stage options."""

    chain: list[str] = Field(default_factory=lambda: ["pricing", "pii", "sentiment"])
    pricing: dict[str, Any] = Field(default_factory=dict)
    pii: dict[str, Any] = Field(default_factory=dict)
    sentiment: dict[str, Any] = Field(default_factory=dict)
    tenant_keys: list[str] = Field(default_factory=list, description="extra attributes naming the tenant")
    join_window_s: float = 30.0


class KafkaSettings(BaseModel):
    """Distributed mode (`KAFKA_BOOTSTRAP_SERVERS` set): topics, groups and client options.
    Defaults and meaning are documented in docs/kafka-topics.md and docs/deploy.md."""

    raw_spans_topic: str = "otlp_spans"  # the OTel Collector kafka exporter's default names
    raw_logs_topic: str = "otlp_logs"
    inferences_topic: str = "inferline.inferences"
    spans_topic: str = "inferline.spans"
    logs_topic: str = "inferline.logs"
    dlq_topic: str = "inferline.dlq"
    scores_topic: str = "inferline.scores"  # evaluation results (`scores` rows)
    ledger_topic: str = "inferline.ledger"  # ingest ledger counts (one partition: a few rows a second)
    processor_group: str = "inferline-processor"
    writer_group: str = "inferline-writer"
    # Used only when a role creates missing topics at start (best effort; brokers that refuse
    # CreateTopics fall back to their auto-creation).
    create_topics: bool = True
    raw_partitions: int = Field(12, ge=1, description="both raw topics: keep them equal (trace co-location)")
    enriched_partitions: int = Field(12, ge=1)
    replication_factor: int = Field(1, ge=1)
    partition_key: Literal["trace_id", "none"] = "trace_id"
    # With `partition_key: trace_id`: the traces of a request bound for one partition share a
    # message ("partition"), or each trace is a message keyed by its id ("trace", the Collector's
    # partition_traces_by_id). A message costs the receiver and the processor about as much as
    # the records in it (docs/kafka-topics.md).
    raw_messages: Literal["partition", "trace"] = "partition"
    # Enriched topics: many records per message (schema version 2), or one (version 1, keyed by
    # trace id) for consumers that need a record per message. docs/kafka-topics.md.
    enriched_format: Literal["ndjson", "json"] = "ndjson"
    max_message_bytes: int = Field(1_000_000, ge=10_000, description="the broker's message.max.bytes or less")
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "zstd"
    linger_ms: int = Field(5, ge=0)
    delivery_timeout_s: float = Field(10.0, gt=0, description="receiver: wait for Kafka acks")
    max_pending_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="receiver: unacked bytes cap")
    project_header: str = "inferline-project"
    default_project: str = Field("default", description="project for raw messages without the project header")
    max_poll_records: int = Field(500, ge=1)
    # The processor polls about this many bytes of messages at a time (fewer records where they
    # are large): one poll is one batch of its workers, what it holds is in their memory.
    max_poll_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="processor: bytes of messages per poll")
    # The writer's longest wait for a batch to fill, unless INFERLINE_BATCH__MAX_DELAY_S is set
    # (`WriterRole`). Every flush costs ClickHouse a fixed ~0.3-0.6 s of CPU (a part per table and
    # rollup view, the replay lookup), and the writer gets rows at the processors' pace: at 1 s
    # it flushed ~1,000 calls at a time and that fixed cost was a third of the writer's CPU, taken
    # from the processors on shared cores. Nobody waits on it: senders were acknowledged once
    # Kafka had their data; only what queries see comes later.
    writer_max_delay_s: float = Field(5.0, gt=0)
    # ...but once no record arrived for this long (0: never), the writer flushes what it has: the
    # topics are quiet, waiting longer would only keep those rows out of queries (at the end of a
    # burst, up to `writer_max_delay_s`). Busy topics deliver more often than this, so their
    # flushes stay as few as before.
    writer_quiet_s: float = Field(1.0, ge=0)
    client_id: str = "inferline"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFERLINE_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Path("data")
    clickhouse_url: str = Field(
        "", validation_alias=AliasChoices("INFERLINE_CLICKHOUSE_URL", "CLICKHOUSE_URL", "clickhouse_url")
    )
    clickhouse_database: str = "default"
    kafka_bootstrap_servers: str = Field(
        "",
        validation_alias=AliasChoices(
            "INFERLINE_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"
        ),
    )
    host: str = "0.0.0.0"
    grpc_port: int = 4317
    http_port: int = 4318
    api_port: int = 8080
    max_request_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="decompressed OTLP body limit")
    max_inflight_bytes: int = Field(
        128 * 1024 * 1024,
        ge=1024,
        description="request bytes being handled at once, past which requests get 429",
    )
    body_idle_timeout_s: float = Field(
        30.0, gt=0, description="longest wait for the next part of an OTLP/HTTP body before a 408"
    )
    max_rss_bytes: int | None = Field(
        None,
        ge=0,
        description="anonymous resident memory of the service (heaps of its processes together; not "
        "mapped library files) past which receivers refuse requests (503); 0 = off; unset: 80% of "
        "the container's memory limit, or of the machine's",
    )
    max_queue_wait_s: float = Field(
        2.0, gt=0, description="longest a request waits for a free processor before a retryable refusal"
    )
    workers: int | None = Field(
        None,
        ge=0,
        description="processes for the CPU stages (embedded, processor role); 0: a thread; unset: per core",
    )
    # Under Kubernetes' default 30 s termination grace period, with room to spare.
    shutdown_timeout_s: float = Field(25.0, gt=0, description="SIGTERM/SIGINT: drain, flush and exit within")
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    retention_days: int = Field(180, ge=1)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    mask_at_receiver: bool = Field(
        False, description="mask PII in the OTLP request before it leaves the receiver (raw Kafka topics)"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    batch: BatchSettings = Field(default_factory=BatchSettings)
    local_log: LocalLogSettings = Field(default_factory=LocalLogSettings)
    sql: SqlSettings = Field(default_factory=SqlSettings)
    processors: ProcessorSettings = Field(default_factory=ProcessorSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    # Static API keys, "key=project,key2=project2": a distributed receiver authenticates without
    # opening the writer's store. Keys in a ClickHouse server's api_keys table work as well.
    api_keys: str = ""
    admin_key: SecretStr = Field(
        SecretStr(""), description="bearer key of the admin API (projects and keys); empty: admin API off"
    )
    metrics_token: SecretStr = Field(
        SecretStr(""),
        description="bearer token Prometheus sends to /metrics (the admin key works too); empty: "
        "embedded mode makes one on the first start (data/metrics_token), the Kafka roles keep "
        "/metrics closed",
    )
    api_keys_file: Path | None = Field(None, description="file with one key=project per line")
    config_file: Path | None = Field(None, description="optional YAML file with the same keys")

    @property
    def resolved_workers(self) -> int:
        if self.workers is not None:
            return self.workers
        cores = os.cpu_count() or 1
        return cores if cores > 1 else 0

    @property
    def resolved_max_rss_bytes(self) -> int:
        if self.max_rss_bytes is not None:
            return self.max_rss_bytes
        return int(memory_limit_bytes() * 0.8)

    @property
    def resolved_clickhouse_url(self) -> str:
        return self.clickhouse_url or f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the YAML file, which beats defaults.
        return init_settings, env_settings, _YamlSource(settings_cls, env_settings)


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by INFERLINE_CONFIG_FILE (or config_file passed in)."""

    def __init__(self, settings_cls: type[BaseSettings], env: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._env = env

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        import os

        path = os.environ.get("INFERLINE_CONFIG_FILE")
        if not path:
            return {}
        with open(path, encoding="utf-8") as f:
            loaded = yaml.safe_load(f) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        return loaded
