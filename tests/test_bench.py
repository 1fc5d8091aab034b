"""The benchmark harness's own plumbing, against a real service: a short load phase is reported
with the figures the results file promises, and the loss check finds spans that never arrived.
No timing is asserted (figures are the benchmark's job, not the tests')."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from bench import compare, report
from bench.payloads import phase_base, span_id_prefix
from bench.phases import LoadGenerator, Phase, Sql, missing_ids, phase_line, run_phase, wait_until_idle
from bench.procstats import ProcessTree
from bench.progress import Progress
from tests.conftest import Service, make_service

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    s = make_service(tmp_path_factory.mktemp("bench"))
    s.start()
    yield s
    s.stop()


def test_a_short_phase_is_reported_and_every_acknowledged_span_is_found(svc: Service, tmp_path: Path) -> None:
    gen = LoadGenerator(
        {
            "grpc": svc.grpc_target,
            "http": svc.http_url,
            "key": svc.key,
            "genai_spans": 20,
            "plain_spans": 20,
            "seed": 1,
            "templates": 3,  # one per transport: gRPC, HTTP protobuf, HTTP JSON
        }
    )
    assert svc.process is not None
    sql = Sql(svc.api_url, svc.key)
    phase = Phase("genai_max", "test", "genai", "closed", 0xC1, 1.0, concurrency=3)
    try:
        figures = run_phase(
            gen,
            sql,
            ProcessTree([svc.process.pid]),
            Progress(io.StringIO()),
            phase,
            settle_s=2,
            drain_timeout_s=20,
        )
    finally:
        gen.close()

    assert figures["acked_spans"] > 0
    assert figures["persisted_spans"] >= figures["acked_spans"]
    assert figures["persisted_genai_spans"] >= figures["acked_genai_spans"] > 0
    assert figures["acked_log_records"] > 0  # the OTel-events convention sends its content as logs
    assert (figures["lost_spans"], figures["lost_inferences"], figures["lost_log_records"]) == (0, 0, 0)
    assert figures["errors_total"] == 0
    assert figures["ack_latency_ms"]["n"] == figures["requests"]
    # Read from the service's /metrics before and after: every inference row stored was either
    # vouched for by its normaliser or looked up before its insert (a row may come in versions).
    lookups = figures["stored_row_lookups"]
    assert lookups.get("vouched", 0) + lookups.get("looked_up", 0) >= figures["persisted_genai_spans"]
    # Each transport's latency apart (OTLP/JSON is decoded before its answer), adding up.
    by_transport = figures["ack_latency_ms_by_transport"]
    assert set(by_transport) == {"grpc", "http-protobuf", "http-json"}
    assert sum(v["n"] for v in by_transport.values()) == figures["requests"]
    assert "ack p50/p99 by transport (ms): grpc" in phase_line("genai_max", figures)
    assert figures["service_cpu_s"] > 0 and figures["peak_rss_mb"] > 0
    for key in ("accepted_spans_per_s", "persisted_spans_per_s", "service_cpu_s_per_10k_spans"):
        assert figures[key] > 0

    # The results file carries the targets next to the figures, and two files compare.
    results = {"machine": {"nproc": 2}, "embedded": {"phases": {"genai_max": figures, "genai_half": figures}}}
    lines = report.summary(results)
    half = next(line for line in lines if "ack latency p99 at half" in line)
    # The p99 says how many requests it is over (a p99 of ~100 is the second-slowest one).
    assert f"(p99 over {figures['requests']:,} requests; grpc " in half and "http-json " in half
    assert any("GenAI spans/s persisted" in line and "NOT MET" in line for line in lines)
    path = report.write(results, tmp_path)
    written = orjson.loads(path.read_bytes())
    genai_target = written["targets"][0]
    assert genai_target["figure"] == figures["persisted_genai_spans_per_s"]
    assert genai_target["met"] is False
    table = "\n".join(compare.compare(written, written))
    assert "embedded.phases.genai_max.persisted_spans_per_s" in table and "1.00" in table


def test_the_loss_check_counts_acknowledged_ids_that_are_not_stored(svc: Service) -> None:
    sql = Sql(svc.api_url, svc.key)
    never_sent = phase_base(0xC2) + 1_000_000
    assert missing_ids(sql, "otel_traces", "SpanId", span_id_prefix(0xC2), [[never_sent, 7]]) == 7


def test_spans_still_in_the_local_log_when_the_drain_times_out_are_reported_as_not_stored_yet(
    tmp_path: Path,
) -> None:
    # Batches wait 8 s for storage, the drain gives up after 1 s: what was acknowledged is still
    # in the local log then, which is "not stored yet", not "lost".
    slow = make_service(tmp_path, INFERLINE_BATCH__MIN_DELAY_S="8", INFERLINE_BATCH__MAX_DELAY_S="8")
    slow.start()
    gen = LoadGenerator(
        {
            "grpc": slow.grpc_target,
            "http": slow.http_url,
            "key": slow.key,
            "genai_spans": 20,
            "plain_spans": 20,
            "seed": 2,
            "templates": 1,
        }
    )
    try:
        assert slow.process is not None
        figures = run_phase(
            gen,
            Sql(slow.api_url, slow.key),
            ProcessTree([slow.process.pid]),
            Progress(io.StringIO()),
            Phase("genai_max", "test", "genai", "closed", 0xC3, 0.5, concurrency=2),
            settle_s=0.5,
            drain_timeout_s=1,
        )
    finally:
        gen.close()
        slow.stop()
    assert figures["acked_spans"] > 0
    assert figures["lost_spans"] is None
    assert figures["unstored_spans"] > 0 and figures["log_backlog_bytes"] > 0
    # The backlog the load left in the local log, also when no refusal came: how near its limit.
    assert figures["peak_log_backlog_mb"] > 0
    assert f"log backlog ≤ {figures['peak_log_backlog_mb']:,.0f} MB" in phase_line("genai_max", figures)
    lines = report.summary({"embedded": {"phases": {"genai_max": figures, "genai_overload": figures}}})
    lost_line = next(line for line in lines if "acknowledged spans lost" in line)
    assert "not measured" in lost_line and "not stored yet when a drain timed out" in lost_line
    refusals_line = next(line for line in lines if "retryable refusals at 2x" in line)
    assert "local log backlog at most" in refusals_line and "of its 1,024 MB" in refusals_line


def test_stage_budgets_are_judged_from_the_stage_table() -> None:
    stages = {
        k: {"us_per_span": us}
        for k, us in {
            "sentiment": 12.0,
            "pii": 25.0,
            "normalise": 20.0,
            "flatten": 15.0,
            "native_encode": 8.0,
            "receive": 5.0,
            "local_log": 10.0,
            "chdb_insert": 10.0,
        }.items()
    }
    verdicts = {t.what: t.met for t in report.targets({"stages": {"stages": stages}})}
    assert verdicts["sentiment stage, µs of CPU per GenAI span"] is True
    assert verdicts["PII stage, µs of CPU per GenAI span"] is False
    assert verdicts["normalise + flatten stage, µs of CPU per GenAI span"] is False  # 35 > 30
    assert verdicts["encoding rows for ClickHouse stage, µs of CPU per GenAI span"] is True
    assert verdicts["main process (receive, local log, chDB insert) stage, µs of CPU per GenAI span"] is True
    assert verdicts["GenAI spans/s persisted, embedded, full chain"] is None  # no load phase in this run


def test_a_phase_begins_once_the_service_has_digested_the_last_one() -> None:
    """The wait before a phase ends as soon as the service's processes are idle, and gives up
    after its bound while they are busy (a merge of the last phase's rows, here a busy loop)."""
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        show = Progress(io.StringIO())
        assert wait_until_idle(ProcessTree([idle.pid]), show, "x", max_wait_s=10) < 2.5
        assert wait_until_idle(ProcessTree([busy.pid]), show, "x", max_wait_s=3) >= 3
    finally:
        idle.kill()
        busy.kill()
