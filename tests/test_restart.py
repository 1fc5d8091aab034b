"""Restarts: data and keys persist, the key is printed only on the first start, and a stop
flushes what was accepted."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from tests.conftest import make_service
from tests.otlp_helpers import GENAI_ATTRIBUTES, json_span, traces_json


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


def test_stop_flushes_accepted_requests(tmp_path: Path) -> None:
    # A long flush delay: the request is still waiting for its batch when the stop arrives.
    service = make_service(tmp_path, INFERLINE_BATCH__MIN_DELAY_S="30", INFERLINE_BATCH__MAX_DELAY_S="30")
    service.start()
    span = json_span(GENAI_ATTRIBUTES, name="in flight at shutdown")
    result: dict[str, int] = {}

    def send() -> None:
        r = httpx.post(
            f"{service.http_url}/v1/traces",
            content=traces_json([span]),
            headers={"authorization": f"Bearer {service.key}", "content-type": "application/json"},
            timeout=60,
        )
        result["status"] = r.status_code

    sender = threading.Thread(target=send)
    sender.start()
    import time

    time.sleep(1.0)
    assert "status" not in result  # not acknowledged before its rows are committed
    assert service.stop() == 0
    sender.join(30)
    assert result["status"] == 200

    service.env["INFERLINE_BATCH__MAX_DELAY_S"] = "0.05"
    service.env["INFERLINE_BATCH__MIN_DELAY_S"] = "0.05"
    service.start()
    try:
        assert service.sql(f"SELECT count() FROM otel_traces WHERE TraceId = '{span['traceId']}'") == "1\n"
    finally:
        service.stop()


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
