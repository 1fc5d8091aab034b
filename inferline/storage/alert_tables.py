"""Migration 8 (issue #16): the small, mutable state of alert rules and webhooks.

ClickHouse has no UPDATE for this kind of state, so every table here is a ReplacingMergeTree
keyed to one thing (a rule, a webhook, a delivery) with a `version` column: a change is a new row
with a higher version, read back with FINAL, so it survives a restart and two writers of the
same key simply leave the newest row. Deleting is a row with `deleted = true` for the same reason.
"""

from __future__ import annotations

# Deliveries are kept this long whatever their outcome (the API shows recent ones only).
DELIVERY_DAYS = 30


def alert_statements(database: str, retention_days: int) -> tuple[str, ...]:
    db = f"`{database}`"
    versioned = "ENGINE = ReplacingMergeTree(version)\n"
    return (
        # One row per rule version; the rule's definition is JSON (`inferline.alerts.rules`), so
        # a new kind of metric needs no migration.
        f"""CREATE TABLE IF NOT EXISTS {db}.alert_rules
(
    `project_id` LowCardinality(String),
    `rule_id` String,
    `spec` String,
    `created_at` DateTime64(3, 'UTC'),
    `updated_at` DateTime64(3, 'UTC'),
    `deleted` Bool,
    `version` UInt64
)
{versioned}ORDER BY (project_id, rule_id)""",
        # Where each rule stands: ok | pending | firing | resolved, and since when.
        f"""CREATE TABLE IF NOT EXISTS {db}.alert_state
(
    `project_id` LowCardinality(String),
    `rule_id` String,
    `status` LowCardinality(String),
    `since` Nullable(DateTime64(3, 'UTC')),
    `value` Nullable(Float64),
    `calls` UInt64,
    `evaluated_at` DateTime64(3, 'UTC'),
    `version` UInt64
)
{versioned}ORDER BY (project_id, rule_id)""",
        # The history: one row per transition (firing, resolved). The event id is derived from
        # the rule and the minute of the transition, so an evaluation repeated after a crash
        # writes the same row again.
        f"""CREATE TABLE IF NOT EXISTS {db}.alert_events
(
    `project_id` LowCardinality(String),
    `rule_id` String,
    `event_id` String,
    `at` DateTime64(3, 'UTC'),
    `status` LowCardinality(String),
    `value` Nullable(Float64),
    `calls` UInt64,
    `body` String,
    -- orders two transitions of one evaluation minute (evaluations more often than a minute)
    `recorded_at` DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (project_id, rule_id, at, event_id)
TTL toDateTime(at) + toIntervalDay({retention_days})""",
        # The secret signs deliveries, so it is kept as given (not hashed); no key reads this
        # table through the SQL endpoint and the API shows the secret only when creating it.
        f"""CREATE TABLE IF NOT EXISTS {db}.webhooks
(
    `project_id` LowCardinality(String),
    `webhook_id` String,
    `url` String,
    `secret` String,
    `events` Array(LowCardinality(String)),
    `description` String,
    `created_at` DateTime64(3, 'UTC'),
    `deleted` Bool,
    `version` UInt64
)
{versioned}ORDER BY (project_id, webhook_id)""",
        # The outbox: one row per (event, webhook), rewritten after every attempt.
        f"""CREATE TABLE IF NOT EXISTS {db}.webhook_deliveries
(
    `project_id` LowCardinality(String),
    `webhook_id` String,
    `delivery_id` String,
    `event_id` String,
    `event_type` LowCardinality(String),
    `body` String,
    `created_at` DateTime64(3, 'UTC'),
    `status` LowCardinality(String),
    `attempts` UInt32,
    `next_attempt_at` DateTime64(3, 'UTC'),
    `last_status` UInt16,
    `last_error` String,
    `delivered_at` Nullable(DateTime64(3, 'UTC')),
    `version` UInt64
)
{versioned}ORDER BY (project_id, webhook_id, delivery_id)
TTL toDateTime(created_at) + toIntervalDay({DELIVERY_DAYS})""",
    )
