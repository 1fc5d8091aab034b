"""Restarts: data and keys persist, the key is printed only on the first start, and a stop
flushes what was accepted."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Service, make_service
from tests.otlp_helpers import GENAI_ATTRIBUTES, json_span, traces_json
from tests.prom_helpers import metrics_text, scrape, value

pytestmark = pytest.mark.e2e


def test_data_and_keys_survive_a_restart(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    service.start()
    key = service.key
    assert key in service.stdout and "OTEL_EXPORTER_OTLP_HEADERS" in service.stdout
    assert key not in service.logs()  # printed once for the user, never logged
    span = json_span(GENAI_ATTRIBUTES, name="before restart")
    r = httpx.post(
        f"{service.http_url}/v1/traces",
        content=traces_json([span]),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    assert r.status_code == 200
    assert service.stop() == 0

    service.start()
    try:
        assert service.key == key
        assert key not in service.stdout  # not printed again
        assert (
            service.sql(f"SELECT count() FROM llm_inferences WHERE trace_id = '{span['traceId']}'") == "1\n"
        )
    finally:
        assert service.stop() == 0


def test_stop_stores_what_was_acknowledged(tmp_path: Path) -> None:
    """A long flush delay: the request is acknowledged at once (the local log has it) and is not in
    ClickHouse yet when the stop arrives; the stop stores it."""
    service = make_service(tmp_path, INFERLINE_BATCH__MIN_DELAY_S="30", INFERLINE_BATCH__MAX_DELAY_S="30")
    service.start()
    span = json_span(GENAI_ATTRIBUTES, name="in flight at shutdown")
    r = httpx.post(
        f"{service.http_url}/v1/traces",
        content=traces_json([span]),
        headers={"authorization": f"Bearer {service.key}", "content-type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 200
    unstored = metrics_text(service.api_url)
    assert 'inferline_queue_depth{queue="unstored_entries"} 1.0' in unstored
    assert service.stop() == 0
    assert "stopping with a flush not stored" not in service.logs()

    service.env["INFERLINE_BATCH__MAX_DELAY_S"] = "0.05"
    service.env["INFERLINE_BATCH__MIN_DELAY_S"] = "0.05"
    service.start()
    try:
        count = service.sql(f"SELECT count() FROM otel_traces WHERE TraceId = '{span['traceId']}'")
        assert count == "1\n"
        assert "rebuilding recorded flushes" not in service.logs()  # stored at the stop, not replayed
    finally:
        assert service.stop() == 0


def test_a_configuration_mistake_stops_the_start_with_the_reason(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    service = make_service(tmp_path, INFERLINE_PROCESSORS__CHAIN='["pricing", "sentiments"]')
    out = subprocess.run(
        [sys.executable, "-m", "inferline.service.cli", "run"],
        cwd=ROOT,
        env=service.env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "unknown processor 'sentiments'" in out.stderr and "Traceback" not in out.stderr
    assert not service.data_dir.exists()  # nothing was created


def _lookups(service: Service) -> tuple[float, float, float]:
    """The running service's inference rows vouched for, looked up and found stored before insert."""
    samples = scrape(service.api_url)
    return tuple(  # type: ignore[return-value]
        value(samples, "inferline_stored_row_lookups_total", outcome=o)
        for o in ("vouched", "looked_up", "found")
    )


@pytest.mark.parametrize("workers", ["0", "2"], ids=["in-thread", "worker-processes"])
def test_a_fresh_store_looks_nothing_up_and_a_restarted_one_finds_a_retry(
    tmp_path: Path, workers: str
) -> None:
    """A model call that started before the service was up is new to an empty store: its row
    skips the look-up of stored rows (a query per flush). After a restart, a sender's retry of a
    stored call (same span, same start) is looked up and found, and the rollups count the call
    once; a call that started after every stored one is vouched for again."""
    service = make_service(tmp_path, INFERLINE_WORKERS=workers)
    service.start()
    headers = {"authorization": f"Bearer {service.key}", "content-type": "application/json"}
    call = traces_json([json_span(GENAI_ATTRIBUTES, name="first", start_ns=time.time_ns() - 8 * 10**9)])
    try:
        assert httpx.post(f"{service.http_url}/v1/traces", content=call, headers=headers).status_code == 200
        service.settle()
        assert _lookups(service) == (1, 0, 0)
    finally:
        assert service.stop() == 0

    service.start()
    try:
        headers["authorization"] = f"Bearer {service.key}"
        assert httpx.post(f"{service.http_url}/v1/traces", content=call, headers=headers).status_code == 200
        service.settle()
        assert _lookups(service) == (0, 1, 1)
        assert service.sql("SELECT sum(calls) FROM llm_inferences_by_minute") == "1\n"
        later = traces_json([json_span(GENAI_ATTRIBUTES, name="later")])
        assert httpx.post(f"{service.http_url}/v1/traces", content=later, headers=headers).status_code == 200
        service.settle()
        assert _lookups(service) == (1, 1, 1)
        assert service.sql("SELECT sum(calls) FROM llm_inferences_by_minute") == "2\n"
    finally:
        assert service.stop() == 0
