"""Log records have no id. Until migration 11, `otel_logs` took the same time, span, severity and
body for the same record, and distinct records sharing them (the untimed records of one request,
stamped with one time; events differing only in name or attributes) collapsed into one row as
they were inserted: acknowledged, then gone. The record's position in its request now tells them
apart, while a replay of the request still stores each record once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from clickhouse_connect.driver.client import Client
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from inferline.core.records import Batch
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.otlp.flatten import flatten_logs
from inferline.otlp.json_codec import decode_json
from inferline.processors.otel_rows import log_row
from inferline.storage.clickhouse import connect
from inferline.storage.schema import migrate
from tests.conftest import Service, make_service, wait_for
from tests.migration_helpers import migrate_before
from tests.otlp_helpers import key_values, new_span_id, new_trace_id


def _records(trace_id: str, span_id: str, at_ns: int | None) -> list[dict]:
    """Three "retrying" records for different users and two events alike but for their name: five
    records a user sent, alike in time, span, severity and body. With `at_ns` None the retries
    carry no time (the receiver stamps them all with one)."""
    time_field = {} if at_ns is None else {"timeUnixNano": str(at_ns)}
    retries = [
        {**time_field, "traceId": trace_id, "spanId": span_id, "body": {"stringValue": "retrying"},
         "attributes": key_values({"user.id": f"u{i}"})}
        for i in range(3)
    ]  # fmt: skip
    events = [
        {
            "timeUnixNano": str(at_ns or time.time_ns()),
            "traceId": trace_id,
            "spanId": span_id,
            "eventName": name,
        }
        for name in ("checkout.started", "checkout.paid")
    ]
    return retries + events


def _request(trace_id: str, span_id: str, at_ns: int | None) -> bytes:
    return orjson.dumps(
        {
            "resourceLogs": [
                {
                    "resource": {"attributes": key_values({"service.name": "shop"})},
                    "scopeLogs": [
                        {"scope": {"name": "app"}, "logRecords": _records(trace_id, span_id, at_ns)}
                    ],
                }
            ]
        }
    )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = make_service(tmp_path_factory.mktemp("logs"))
    svc.start()
    yield svc
    assert svc.stop() == 0


@pytest.mark.e2e
@pytest.mark.parametrize("timed", [True, False], ids=["timed", "untimed"])
def test_records_alike_but_for_attributes_or_name_are_all_stored_and_a_retry_adds_none(
    service: Service, timed: bool
) -> None:
    """Five records stored as five rows (before: two). A sender's retry of the same timed request
    adds nothing; untimed records are stamped when received, so a retry of those is new data."""
    trace_id, span_id = new_trace_id(), new_span_id()
    headers = {"x-api-key": service.key, "content-type": "application/json"}
    body = _request(trace_id, span_id, time.time_ns() if timed else None)
    for _ in range(2 if timed else 1):
        r = httpx.post(f"{service.http_url}/v1/logs", content=body, headers=headers)
        assert r.status_code == 200 and r.json() == {}

    def stored() -> str:
        return service.sql(
            f"SELECT EventName, LogAttributes['user.id'] FROM otel_logs FINAL WHERE TraceId = '{trace_id}' "
            "ORDER BY EventName, LogAttributes['user.id']"
        )

    assert wait_for(lambda: stored().count("\n") >= 5)
    time.sleep(0.5)  # a duplicate would have landed with the same flush
    assert stored() == "\tu0\n\tu1\n\tu2\ncheckout.paid\t\ncheckout.started\t\n"


@pytest.mark.e2e
def test_records_alike_in_separate_requests_are_all_stored_and_a_retry_adds_none(service: Service) -> None:
    """Two requests of one record each (a simple log processor sends so), alike in their
    second-precision time, body and severity, without trace context, told apart only by their
    attributes: each was first in its request, so they collapsed into one row, counted stored.
    Their observed times tell them apart; a retry of the first request adds nothing."""
    second = time.time_ns() // 10**9 * 10**9
    marker = new_trace_id()

    def request(job: str) -> bytes:
        record = {
            "timeUnixNano": str(second),
            "observedTimeUnixNano": str(time.time_ns()),
            "severityNumber": 9,
            "body": {"stringValue": f"job finished {marker}"},
            "attributes": key_values({"job.id": job}),
        }
        scope = {"scope": {"name": "app"}, "logRecords": [record]}
        resource = {"resource": {"attributes": key_values({"service.name": "jobs"})}, "scopeLogs": [scope]}
        return orjson.dumps({"resourceLogs": [resource]})

    headers = {"x-api-key": service.key, "content-type": "application/json"}
    first = request("A")
    for body in (first, request("B"), first):
        r = httpx.post(f"{service.http_url}/v1/logs", content=body, headers=headers)
        assert r.status_code == 200 and r.json() == {}

    def stored() -> str:
        return service.sql(
            f"SELECT LogAttributes['job.id'] FROM otel_logs FINAL WHERE Body = 'job finished {marker}' "
            "ORDER BY 1"
        )

    assert wait_for(lambda: stored().count("\n") >= 2)
    time.sleep(0.5)  # a duplicate would have landed with the same flush
    assert stored() == "A\nB\n"


@pytest.mark.integration
def test_migration_11_keeps_old_rows_and_tells_new_records_apart(tmp_path: Path) -> None:
    """A store made by migrations 1-10, with a row in it, gains the column and the sorting key;
    the old row reads position 0, and new records alike in time, span, severity and body stay
    apart."""
    client: Client = connect(f"chdb://{tmp_path / 'clickhouse'}")
    migrate_before(client, 11)
    client.command(
        "INSERT INTO otel_logs (Timestamp, TraceId, SpanId, Body, ServiceName, ProjectId) "
        "VALUES (now64(9), 'old', 's', 'kept', 'svc', 'p')"
    )
    assert migrate(client) == [11, 12]
    key = client.command("SELECT sorting_key FROM system.tables WHERE name = 'otel_logs'")
    assert str(key).endswith("cityHash64(Body), RecordIndex, ObservedTimestamp")
    trace_id = new_trace_id()
    request = decode_json(_request(trace_id, new_span_id(), time.time_ns()), ExportLogsServiceRequest)
    rows = [log_row(r) for r in flatten_logs(request, "p").records]
    rows[0]["Timestamp"] = rows[1]["Timestamp"] = rows[2][
        "Timestamp"
    ]  # one stamped time, as a receiver gives
    Inserter(client).insert(Batch(logs=rows), "t1")
    assert client.command(f"SELECT count() FROM otel_logs FINAL WHERE TraceId = '{trace_id}'") == 5
    assert client.query("SELECT Body, RecordIndex FROM otel_logs WHERE TraceId = 'old'").result_rows == [
        ("kept", 0)
    ]
    client.close()


@pytest.mark.integration
def test_a_fresh_store_sorts_log_records_by_their_position_and_observed_time_too(tmp_path: Path) -> None:
    client = connect(f"chdb://{tmp_path / 'clickhouse'}")
    migrate(client)
    key = client.command("SELECT sorting_key FROM system.tables WHERE name = 'otel_logs'")
    assert str(key).endswith("cityHash64(Body), RecordIndex, ObservedTimestamp")
    client.close()
