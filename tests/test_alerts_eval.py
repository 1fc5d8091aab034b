"""Alert rules evaluated from the rollups, in-process on a real store: calls are written into
llm_inferences (the rollup views take them as they take the pipeline's inserts) and the
evaluator is run at chosen times (its clock is a parameter), so minutes pass without sleeping."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from inferline.alerts.evaluator import Evaluator, whole_minute
from inferline.alerts.rules import RuleSpec
from inferline.alerts.store import AlertStore, StoredRule, Webhook
from tests.alert_helpers import insert_calls, opened_store

pytestmark = pytest.mark.integration

MINUTE = timedelta(minutes=1)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with opened_store(tmp_path) as c:
        yield c


@pytest.fixture
def store(client: Client) -> AlertStore:
    return AlertStore(client)


@pytest.fixture
def base() -> datetime:
    # Recent enough for the tables' TTL; the evaluations below are at minutes after it.
    return whole_minute(datetime.now(UTC)) - timedelta(hours=1)


def add_rule(store: AlertStore, project: str = "default", **spec: Any) -> str:
    rule_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    store.put_rule(StoredRule(project, rule_id, RuleSpec(**{"name": "r", **spec}), now, now))
    return rule_id


def at(minute: datetime) -> datetime:
    """An evaluation time that measures the whole minutes before `minute`."""
    return minute + timedelta(seconds=10)


def test_a_blip_does_not_fire_a_sustained_breach_does_and_fast_calls_resolve_it(
    client: Client, store: AlertStore, base: datetime
) -> None:
    rule = add_rule(store, metric="latency_p95", threshold=1000, window_minutes=1, for_minutes=2, min_calls=3)
    evaluator = Evaluator(store, max_pending=100)
    statuses = []

    def evaluate(minute: datetime) -> list[str]:
        events = evaluator.evaluate(at(minute))
        statuses.append(store.states("default")[rule].status)
        return [e.type for e in events]

    # A one-minute blip of slow calls: pending once, then ok again; never fired.
    insert_calls(client, base, [3000] * 5)
    insert_calls(client, base + MINUTE, [200] * 5)
    assert evaluate(base + MINUTE) == []
    assert evaluate(base + 2 * MINUTE) == []
    assert statuses == ["pending", "ok"]

    # Slow for three minutes: fires once the condition held for two.
    for m in (5, 6, 7, 8):
        insert_calls(client, base + m * MINUTE, [2500, 2600, 2700, 2800])
    assert evaluate(base + 6 * MINUTE) == []
    assert evaluate(base + 7 * MINUTE) == []
    assert evaluate(base + 8 * MINUTE) == ["alert.firing"]
    assert evaluate(base + 9 * MINUTE) == []  # still firing: no second event
    assert statuses[2:] == ["pending", "pending", "firing", "firing"]
    # The same minute evaluated again (a restart) repeats nothing.
    assert evaluator.evaluate(at(base + 9 * MINUTE)) == []

    # Fast calls: resolved at the first minute without the breach.
    insert_calls(client, base + 9 * MINUTE, [150] * 10)
    assert evaluate(base + 10 * MINUTE) == ["alert.resolved"]
    assert evaluate(base + 11 * MINUTE) == []  # no calls at all: stays resolved
    assert statuses[-2:] == ["resolved", "resolved"]

    history = store.events("default", rule)
    assert [(e["status"], e["at"].replace(tzinfo=UTC)) for e in history] == [
        ("resolved", base + 10 * MINUTE),
        ("firing", base + 8 * MINUTE),
    ]
    assert history[1]["value"] > 2000 and history[1]["calls"] == 4


def test_a_firing_rule_that_is_disabled_is_resolved_once(
    client: Client, store: AlertStore, base: datetime
) -> None:
    """A firing rule turned off kept showing `firing` for good, and its webhooks never heard the
    end of it. It is resolved at the next evaluation, once."""
    rule = add_rule(store, metric="latency_p95", threshold=1000, window_minutes=1)
    evaluator = Evaluator(store, max_pending=100)
    insert_calls(client, base, [3000] * 5)
    assert [e.type for e in evaluator.evaluate(at(base + MINUTE))] == ["alert.firing"]
    [stored] = store.rules("default", rule)
    store.put_rule(StoredRule(stored.project_id, rule, stored.spec.model_copy(update={"enabled": False}),
                              stored.created_at, stored.updated_at))  # fmt: skip
    insert_calls(client, base + MINUTE, [3000] * 5)  # still slow: the rule is off, not satisfied
    assert [e.type for e in evaluator.evaluate(at(base + 2 * MINUTE))] == ["alert.resolved"]
    assert store.states("default")[rule].status == "resolved"
    assert evaluator.evaluate(at(base + 3 * MINUTE)) == []


def test_a_crash_before_the_states_are_written_repeats_no_event(
    client: Client, store: AlertStore, base: datetime
) -> None:
    """Transitions are written (history, outbox) before the states: evaluating the same minute
    again after a crash in between finds the same transition, with the same id, kept once."""
    rule = add_rule(store, metric="error_rate", threshold=0.1)
    store.put_webhook(Webhook("default", "w1", "https://93.184.216.34/", "whsec_x", (), "", base))
    insert_calls(client, base, [100] * 5, success=False)
    evaluator = Evaluator(store, max_pending=100)
    write_states = store.put_states

    def crash(states: Any) -> None:
        raise RuntimeError("killed")

    store.put_states = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        evaluator.evaluate(at(base + MINUTE))
    store.put_states = write_states  # type: ignore[method-assign]
    [event] = evaluator.evaluate(at(base + MINUTE))  # the restarted service, the same minute
    assert event.type == "alert.firing"
    assert [e["event_id"] for e in store.events("default", rule)] == [event.event_id]
    assert [d.event_id for d in store.deliveries("default", "w1")] == [event.event_id]
    assert store.states("default")[rule].status == "firing"


def test_too_few_calls_never_fire(client: Client, store: AlertStore, base: datetime) -> None:
    rule = add_rule(store, metric="latency_p95", threshold=1000, window_minutes=5, min_calls=10)
    insert_calls(client, base, [5000] * 9)
    evaluator = Evaluator(store, max_pending=100)
    assert evaluator.evaluate(at(base + MINUTE)) == []
    state = store.states("default")[rule]
    assert state.status == "ok" and state.calls == 9 and state.value is not None and state.value > 4000


def test_every_metric_and_filter_in_one_query_per_project(
    client: Client, store: AlertStore, base: datetime
) -> None:
    now = base + 10 * MINUTE
    m = now - 2 * MINUTE
    insert_calls(client, m, [100] * 8, cost=0.01, tokens=300)
    insert_calls(client, m, [4000] * 2, success=False, cost=0.01, tokens=300)
    insert_calls(
        client,
        m,
        [900] * 5,
        model="claude-sonnet-4-5",
        provider="anthropic",
        tenant="acme",
        tags={"feature": "chat"},
        cost=0.02,
        tokens=50,
    )
    # The same window a day earlier, for cost_vs_previous_day: a third of the cost.
    insert_calls(client, m - timedelta(days=1), [100] * 10, cost=0.01)
    insert_calls(client, m - timedelta(days=1), [100] * 5, model="claude-sonnet-4-5", cost=0.02)
    insert_calls(client, m, [5000] * 50, project="other")  # another project's calls count nowhere

    openai = {"provider": "openai"}
    rules = {
        "error_rate": add_rule(store, metric="error_rate", threshold=0.1, filter=openai),
        "slow_share": add_rule(store, metric="slow_share", slow_ms=1000, threshold=0.1, filter=openai),
        "cost_per_hour": add_rule(store, metric="cost_per_hour", threshold=2, window_minutes=5),
        "cost_per_day": add_rule(store, metric="cost_per_day", threshold=10, window_minutes=60),
        "cost_vs_previous_day": add_rule(store, metric="cost_vs_previous_day", threshold=2, window_minutes=5),
        "tokens_per_minute": add_rule(store, metric="tokens_per_minute", threshold=1000, window_minutes=5),
        "p50_model": add_rule(
            store, metric="latency_p50", threshold=500, filter={"model": "claude-sonnet-4-5"}
        ),
        "tenant": add_rule(store, metric="latency_p99", threshold=500, filter={"tenant": "acme"}),
        "tag": add_rule(store, metric="latency_p50", threshold=500, filter={"tags": {"feature": "chat"}}),
        "tag_miss": add_rule(store, metric="latency_p50", threshold=500, filter={"tags": {"feature": "x"}}),
        "ttft": add_rule(store, metric="ttft_p95", threshold=1),
    }
    other = add_rule(store, project="other", metric="latency_p50", threshold=1000)
    queries: list[str] = []
    measure = store.query

    def counted(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        queries.append(sql)
        return measure(sql, params)

    store.query = counted  # type: ignore[method-assign]
    Evaluator(store, max_pending=100).evaluate(at(now))
    assert len(queries) == 2  # one per project, whatever the number of rules

    states = store.states("default")
    value = {name: states[rule_id].value for name, rule_id in rules.items()}
    calls = {name: states[rule_id].calls for name, rule_id in rules.items()}
    assert value["error_rate"] == pytest.approx(0.2) and calls["error_rate"] == 10
    assert value["slow_share"] == pytest.approx(0.2, abs=0.02)
    assert value["cost_per_hour"] == pytest.approx((0.1 + 0.1) * 12)  # $0.2 in 5 minutes
    assert value["cost_per_day"] == pytest.approx(0.2 * 24)
    assert value["cost_vs_previous_day"] == pytest.approx(0.2 / 0.2)
    assert value["tokens_per_minute"] == pytest.approx((10 * 300 + 5 * 50) / 5)
    assert value["p50_model"] == pytest.approx(900) and calls["p50_model"] == 5
    assert value["tenant"] == pytest.approx(900) and calls["tenant"] == 5
    assert value["tag"] == pytest.approx(900) and calls["tag"] == 5
    assert value["tag_miss"] is None and calls["tag_miss"] == 0
    assert value["ttft"] is None and calls["ttft"] == 0  # none of these calls had a TTFT
    firing = {name for name, rule_id in rules.items() if states[rule_id].status == "firing"}
    assert firing == {"error_rate", "slow_share", "cost_per_hour", "p50_model", "tenant", "tag"}
    assert store.states("other")[other].status == "firing"
    assert store.states("other")[other].calls == 50


def test_average_rating_from_feedback(client: Client, store: AlertStore, base: datetime) -> None:
    rule = add_rule(store, metric="avg_rating", comparison="<", threshold=3, window_minutes=10, min_calls=2)
    now = base + 10 * MINUTE
    client.insert(
        "feedback",
        [
            ["default", str(uuid.uuid4()), str(uuid.uuid4()), now - 3 * MINUTE, now - 3 * MINUTE, r]
            for r in (1, 2, 4)
        ],
        column_names=["project_id", "inference_id", "feedback_id", "inference_time", "created_at", "rating"],
    )
    events = Evaluator(store, max_pending=100).evaluate(at(now))
    assert [e.type for e in events] == ["alert.firing"]
    state = store.states("default")[rule]
    assert state.value == pytest.approx(7 / 3) and state.calls == 3


def test_average_score_of_one_name(client: Client, store: AlertStore, base: datetime) -> None:
    """Evaluation results (the `scores` table): only the rule's score name counts."""
    rule = add_rule(store, metric="avg_score", score_name="relevance", comparison="<", threshold=0.5)
    also = add_rule(store, metric="avg_rating", comparison="<", threshold=3)  # no feedback: nothing
    now = base + 10 * MINUTE
    # One result per call (trace) and name: the table keeps the newest of a repeated one.
    results = [("default", 2, "relevance", v) for v in (0.2, 0.3, 0.4)]
    results += [
        ("default", 2, "toxicity", 0.9),
        ("default", 30, "relevance", 1.0),
        ("other", 2, "relevance", 1.0),
    ]
    client.insert(
        "scores",
        [[p, now - m * MINUTE, "span", uuid.uuid4().hex, name, v] for p, m, name, v in results],
        column_names=["project_id", "timestamp", "scope", "trace_id", "name", "value"],
    )
    events = Evaluator(store, max_pending=100).evaluate(at(now))
    assert [e.type for e in events] == ["alert.firing"]
    states = store.states("default")
    assert states[rule].value == pytest.approx(0.3) and states[rule].calls == 3
    assert states[also].value is None and states[also].calls == 0


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="slow_ms"):
        RuleSpec(name="x", metric="slow_share", threshold=0.1)
    with pytest.raises(ValueError, match="score_name"):
        RuleSpec(name="x", metric="avg_score", threshold=0.5)
    with pytest.raises(ValueError, match="avg_rating takes no filter"):
        RuleSpec(name="x", metric="avg_rating", threshold=3, filter={"model": "m"})
    with pytest.raises(ValueError, match="finite"):
        RuleSpec(name="x", metric="error_rate", threshold=float("nan"))
    with pytest.raises(ValueError):
        RuleSpec(name="x", metric="error_rate", threshold=1, window_minutes=0)
