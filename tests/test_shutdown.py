"""SIGTERM during steady sending, for every role: the process exits 0 within its shutdown
deadline, and every span a sender saw acknowledged is in ClickHouse afterwards (embedded: after a
restart; Kafka: once the restarted stages caught up)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from inferline.service.shutdown import EXIT_DEADLINE
from tests.conftest import make_service, wait_for
from tests.kafka_helpers import Role, running_roles
from tests.senders import Senders

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.timeout(300)]

DEADLINE_S = 10
KEY, PROJECT = "shutdown-test-key", "proj-shutdown"


def _terminate(process: subprocess.Popen, wait: Callable[[float], int]) -> tuple[int, float]:
    """SIGTERM; (exit code, seconds to exit)."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = wait(DEADLINE_S + 15)
    return code, time.monotonic() - started


def _stored(sql: Callable[[str], str], span_ids: set[str]) -> int:
    ids = ", ".join(f"'{s}'" for s in sorted(span_ids))
    return int(sql(f"SELECT uniqExact(SpanId) FROM otel_traces WHERE SpanId IN ({ids})").strip())


def test_embedded_sigterm_loses_nothing_acknowledged(tmp_path: Path) -> None:
    # Batches wait a while: SIGTERM finds requests waiting for their flush.
    svc = make_service(
        tmp_path,
        INFERLINE_SHUTDOWN_TIMEOUT_S=str(DEADLINE_S),
        INFERLINE_BATCH__MIN_DELAY_S="0.5",
        INFERLINE_BATCH__MAX_DELAY_S="0.5",
    )
    svc.start()
    assert svc.process is not None
    with Senders(svc.grpc_target, svc.http_url, svc.key) as senders:
        senders.wait_for_more(50)
        code, took = _terminate(svc.process, lambda t: svc.process.wait(timeout=t))  # type: ignore[union-attr]
        acknowledged = set(senders.acknowledged)
    assert svc.stop() == code  # already exited: only closes its log files
    assert code == 0, svc.logs()[-3000:]
    assert took < DEADLINE_S, took
    assert "stopping" in svc.logs()

    svc.start()
    try:
        assert _stored(svc.sql, acknowledged) == len(acknowledged)
    finally:
        assert svc.stop() == 0


@pytest.fixture
def kafka_roles(tmp_path: Path) -> Iterator[tuple[Role, Role, Role]]:
    env = {"INFERLINE_API_KEYS": f"{KEY}={PROJECT}", "INFERLINE_SHUTDOWN_TIMEOUT_S": str(DEADLINE_S)}
    with running_roles(tmp_path, **env) as roles:
        yield roles


def test_kafka_roles_sigterm_loses_nothing_acknowledged(kafka_roles: tuple[Role, Role, Role]) -> None:
    receiver, processor, writer = kafka_roles

    def sigterm(role: Role) -> None:
        assert role.process is not None
        code, took = _terminate(role.process, role.wait_exit)
        assert code == 0, f"{role.role}: {role.logs()[-3000:]}"
        assert took < DEADLINE_S, (role.role, took)

    with Senders(receiver.grpc_target, receiver.http_url, KEY) as senders:
        senders.wait_for_more(50)
        sigterm(processor)  # mid-stream: what it had not committed is processed again
        senders.wait_for_more(50)
        processor.start()
        sigterm(writer)  # flushes what it holds and commits, or leaves it to be read again
        senders.wait_for_more(50)
        writer.start()
        senders.wait_for_more(50)
        sigterm(receiver)  # every request it acknowledged is in Kafka
        acknowledged = set(senders.acknowledged)
    assert len(acknowledged) >= 200

    def sql(query: str) -> str:
        return writer.sql(query, KEY)

    stored = wait_for(lambda: _stored(sql, acknowledged) == len(acknowledged), timeout=90, interval=1)
    assert stored, f"{_stored(sql, acknowledged)} of {len(acknowledged)} acknowledged spans stored"
    for role in (processor, writer):
        sigterm(role)


def test_a_drain_that_cannot_finish_is_cut_at_the_deadline(tmp_path: Path) -> None:
    """A SQL query that runs for longer than the deadline holds an engine thread the process
    cannot interrupt: the process still exits when the deadline passes, and says so."""
    deadline_s = 3
    svc = make_service(
        tmp_path, INFERLINE_SHUTDOWN_TIMEOUT_S=str(deadline_s), INFERLINE_SQL__MAX_EXECUTION_S="60"
    )
    svc.start()
    assert svc.process is not None
    children = psutil.Process(svc.process.pid).children(recursive=True)
    assert children  # the processing workers

    def slow_query() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(
                f"{svc.api_url}/",
                content="SELECT count() FROM numbers(10000000000) WHERE sipHash64(number) = 0",
                headers={"Authorization": f"Bearer {svc.key}"},
                timeout=60,
            )

    query = threading.Thread(target=slow_query)
    query.start()
    time.sleep(1)
    started = time.monotonic()
    svc.process.send_signal(signal.SIGTERM)
    code = svc.process.wait(timeout=deadline_s + 15)
    took = time.monotonic() - started
    query.join(60)
    assert svc.stop() == code
    assert code == EXIT_DEADLINE, svc.logs()[-3000:]
    assert deadline_s <= took < deadline_s + 2, took
    assert "shutdown deadline passed" in svc.logs()
    _, orphans = psutil.wait_procs(children, timeout=5)
    assert not orphans  # its worker processes went with it
