"""Reading and writing the alert and webhook tables (migration 8) with a writable client of the
store's own. Every change is a new row version (ReplacingMergeTree, read with FINAL); every read
names the project, which always comes from the caller's key.

The client is used by one thread at a time (the lock): the API's threads, the evaluator and the
delivery loop share it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from inferline.alerts.rules import RuleSpec
from inferline.alerts.states import RuleState
from inferline.core.logging import error_summary

log = structlog.get_logger()

PENDING, DELIVERED, FAILED, DROPPED = "pending", "delivered", "failed", "dropped"


@dataclass(frozen=True, slots=True)
class StoredRule:
    project_id: str
    rule_id: str
    spec: RuleSpec
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Webhook:
    project_id: str
    webhook_id: str
    url: str
    secret: str
    events: tuple[str, ...]
    description: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    project_id: str
    webhook_id: str
    delivery_id: str
    event_id: str
    event_type: str
    body: str
    created_at: datetime
    status: str = PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_status: int = 0
    last_error: str = ""
    delivered_at: datetime | None = None


_DELIVERY_COLUMNS = (
    "project_id",
    "webhook_id",
    "delivery_id",
    "event_id",
    "event_type",
    "body",
    "created_at",
    "status",
    "attempts",
    "next_attempt_at",
    "last_status",
    "last_error",
    "delivered_at",
)


def utcnow() -> datetime:
    """Now, to the millisecond the tables keep (an answer shows what a later read shows)."""
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def _utc(t: datetime | None) -> datetime | None:
    return None if t is None else (t if t.tzinfo else t.replace(tzinfo=UTC))


class AlertStore:
    def __init__(self, client: Any, database: str = "default") -> None:
        self._client = client
        self._db = f"`{database}`"
        self._lock = threading.Lock()
        self._last_version = 0

    def close(self) -> None:
        self._client.close()

    def _version(self) -> int:
        # Strictly increasing within the process, so two changes in one nanosecond still order.
        self._last_version = max(time.time_ns(), self._last_version + 1)
        return self._last_version

    def _rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._client.query(sql, parameters=params).named_results())

    def _insert(self, table: str, columns: Iterable[str], rows: list[list[Any]]) -> None:
        if not rows:
            return
        with self._lock:
            self._client.insert(f"{self._db}.{table}", rows, column_names=list(columns))

    def query(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The evaluator's measuring query."""
        return self._rows(sql, params)

    # Rules -------------------------------------------------------------------------------------

    def put_rule(self, rule: StoredRule, deleted: bool = False) -> None:
        row = [
            rule.project_id,
            rule.rule_id,
            rule.spec.model_dump_json(),
            rule.created_at,
            rule.updated_at,
            deleted,
            self._version(),
        ]
        cols = ("project_id", "rule_id", "spec", "created_at", "updated_at", "deleted", "version")
        self._insert("alert_rules", cols, [row])

    def rules(self, project_id: str | None = None, rule_id: str | None = None) -> list[StoredRule]:
        """A project's rules (or every project's: the evaluator), oldest first."""
        where, params = ["NOT deleted"], {}
        if project_id is not None:
            where.append("project_id = {project:String}")
            params["project"] = project_id
        if rule_id is not None:
            where.append("rule_id = {rule:String}")
            params["rule"] = rule_id
        rows = self._rows(
            "SELECT project_id, rule_id, spec, created_at, updated_at "
            f"FROM {self._db}.alert_rules FINAL WHERE {' AND '.join(where)} ORDER BY created_at, rule_id",
            params,
        )
        out = []
        for r in rows:
            try:
                spec = RuleSpec.model_validate_json(r["spec"])
            except ValueError as e:
                # A rule stored before a rule tightened (or by a bug) is left out, loudly, not
                # allowed to stop every other rule: `delete_rule` still removes it.
                log.error(
                    "an alert rule cannot be read and is skipped",
                    project_id=r["project_id"],
                    rule_id=r["rule_id"],
                    error=error_summary(e),
                )
                continue
            created, updated = _utc(r["created_at"]) or utcnow(), _utc(r["updated_at"]) or utcnow()
            out.append(StoredRule(r["project_id"], r["rule_id"], spec, created, updated))
        return out

    def delete_rule(self, project_id: str, rule_id: str) -> bool:
        """Marks a rule deleted, readable or not; False when the project has no such rule."""
        rows = self._rows(
            f"SELECT spec, created_at FROM {self._db}.alert_rules FINAL "
            "WHERE NOT deleted AND project_id = {project:String} AND rule_id = {rule:String}",
            {"project": project_id, "rule": rule_id},
        )
        if not rows:
            return False
        row = [project_id, rule_id, rows[0]["spec"], rows[0]["created_at"], utcnow(), True, self._version()]
        cols = ("project_id", "rule_id", "spec", "created_at", "updated_at", "deleted", "version")
        self._insert("alert_rules", cols, [row])
        return True

    def states(self, project_id: str) -> dict[str, RuleState]:
        rows = self._rows(
            "SELECT rule_id, status, since, value, calls, evaluated_at "
            f"FROM {self._db}.alert_state FINAL WHERE project_id = {{project:String}}",
            {"project": project_id},
        )
        return {
            r["rule_id"]: RuleState(
                r["status"], _utc(r["since"]), r["value"], int(r["calls"]), _utc(r["evaluated_at"])
            )
            for r in rows
        }

    def put_states(self, states: dict[tuple[str, str], RuleState]) -> None:
        """States by (project, rule), every project's in one insert."""
        rows = [
            [project_id, rule_id, s.status, s.since, s.value, s.calls, s.evaluated_at, self._version()]
            for (project_id, rule_id), s in states.items()
        ]
        cols = ("project_id", "rule_id", "status", "since", "value", "calls", "evaluated_at", "version")
        self._insert("alert_state", cols, rows)

    def add_events(self, events: list[dict[str, Any]]) -> None:
        cols = ("project_id", "rule_id", "event_id", "at", "status", "value", "calls", "body")
        self._insert("alert_events", cols, [[e[c] for c in cols] for e in events])

    def events(self, project_id: str, rule_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where = "project_id = {project:String}" + (" AND rule_id = {rule:String}" if rule_id else "")
        rows = self._rows(
            "SELECT rule_id, event_id, at, status, value, calls "
            f"FROM {self._db}.alert_events FINAL WHERE {where} "
            f"ORDER BY at DESC, recorded_at DESC, event_id LIMIT {int(limit)}",
            {"project": project_id, "rule": rule_id or ""},
        )
        for r in rows:  # in UTC, said so, as every other time the API answers
            r["at"] = _utc(r["at"])
        return rows

    # Webhooks ----------------------------------------------------------------------------------

    def put_webhook(self, hook: Webhook, deleted: bool = False) -> None:
        cols = (
            "project_id",
            "webhook_id",
            "url",
            "secret",
            "events",
            "description",
            "created_at",
            "deleted",
            "version",
        )
        row = [
            hook.project_id,
            hook.webhook_id,
            hook.url,
            hook.secret,
            list(hook.events),
            hook.description,
            hook.created_at,
            deleted,
            self._version(),
        ]
        self._insert("webhooks", cols, [row])

    def webhooks(self, project_id: str, webhook_id: str | None = None) -> list[Webhook]:
        where = "project_id = {project:String} AND NOT deleted"
        if webhook_id is not None:
            where += " AND webhook_id = {hook:String}"
        rows = self._rows(
            "SELECT project_id, webhook_id, url, secret, events, description, created_at "
            f"FROM {self._db}.webhooks FINAL WHERE {where} ORDER BY created_at, webhook_id",
            {"project": project_id, "hook": webhook_id or ""},
        )
        return [
            Webhook(
                r["project_id"],
                r["webhook_id"],
                r["url"],
                r["secret"],
                tuple(r["events"]),
                r["description"],
                _utc(r["created_at"]) or utcnow(),
            )
            for r in rows
        ]

    # The outbox --------------------------------------------------------------------------------

    def put_deliveries(self, deliveries: list[Delivery]) -> None:
        rows = [[getattr(d, c) for c in _DELIVERY_COLUMNS] + [self._version()] for d in deliveries]
        for row, d in zip(rows, deliveries, strict=True):
            row[_DELIVERY_COLUMNS.index("next_attempt_at")] = d.next_attempt_at or d.created_at
        self._insert("webhook_deliveries", (*_DELIVERY_COLUMNS, "version"), rows)

    def pending_count(self, project_id: str) -> int:
        rows = self._rows(
            f"SELECT count() AS n FROM {self._db}.webhook_deliveries FINAL "
            "WHERE project_id = {project:String} AND status = {pending:String}",
            {"project": project_id, "pending": PENDING},
        )
        return int(rows[0]["n"])

    def known_deliveries(self, project_id: str, delivery_ids: list[str]) -> set[str]:
        """Which of these deliveries the outbox already holds (an event enqueued twice)."""
        rows = self._rows(
            f"SELECT DISTINCT delivery_id FROM {self._db}.webhook_deliveries "
            "WHERE project_id = {project:String} AND has({ids:Array(String)}, delivery_id)",
            {"project": project_id, "ids": delivery_ids},
        )
        return {r["delivery_id"] for r in rows}

    def due_deliveries(
        self, now: datetime, limit: int, busy: Iterable[tuple[str, str]] = ()
    ) -> list[Delivery]:
        """Pending deliveries whose time has come, oldest first; none of a webhook that has a
        delivery waiting for a retry (its later events wait too: in order, and one request per
        retry while the endpoint fails, not one per new event), nor of the `busy` webhooks
        (project, webhook: being delivered to)."""
        return self._delivery_rows(
            "status = {pending:String} AND next_attempt_at <= {now:DateTime64(3, 'UTC')} "
            "AND (project_id, webhook_id) NOT IN (SELECT project_id, webhook_id "
            f"FROM {self._db}.webhook_deliveries FINAL "
            "WHERE status = {pending:String} AND next_attempt_at > {now:DateTime64(3, 'UTC')}) "
            "AND NOT has({busy:Array(Tuple(String, String))}, (project_id, webhook_id))",
            {
                "pending": PENDING,
                "now": now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                "busy": [tuple(key) for key in busy],
            },
            "created_at, delivery_id",  # oldest events first
            limit,
        )

    def deliveries(self, project_id: str, webhook_id: str, limit: int = 100) -> list[Delivery]:
        return self._delivery_rows(
            "project_id = {project:String} AND webhook_id = {hook:String}",
            {"project": project_id, "hook": webhook_id},
            "created_at DESC, delivery_id",
            limit,
        )

    def _delivery_rows(self, where: str, params: dict[str, Any], order: str, limit: int) -> list[Delivery]:
        rows = self._rows(
            f"SELECT {', '.join(_DELIVERY_COLUMNS)} FROM {self._db}.webhook_deliveries FINAL "
            f"WHERE {where} ORDER BY {order} LIMIT {int(limit)}",
            params,
        )
        out = []
        for r in rows:
            for c in ("created_at", "next_attempt_at", "delivered_at"):
                r[c] = _utc(r[c])
            out.append(Delivery(**r))
        return out

    def delivery_summary(self, project_id: str) -> dict[str, dict[str, Any]]:
        """Per webhook: counts by status and the last attempt's outcome."""
        rows = self._rows(
            "SELECT webhook_id, countIf(status = 'pending') AS pending, countIf(status = 'delivered') "
            "AS delivered, countIf(status = 'failed') AS failed, countIf(status = 'dropped') AS dropped, "
            "sum(attempts) - countIf(status = 'delivered') AS failed_attempts, "
            "argMaxIf(last_status, version, attempts > 0) AS last_status, "
            "argMaxIf(last_error, version, attempts > 0) AS last_error, "
            "maxIf(version, attempts > 0) AS last_version "
            f"FROM {self._db}.webhook_deliveries FINAL WHERE project_id = {{project:String}} "
            "GROUP BY webhook_id",
            {"project": project_id},
        )
        return {r["webhook_id"]: r for r in rows}
