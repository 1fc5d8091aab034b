"""The side-by-side benchmark's plumbing without installing its peer: which sections `--peer`
runs, how a persisted rate follows from polled counts, how Phoenix's stored spans are counted,
and that a peer's environment cannot reach a database the user configured. `python -m bench
--peer phoenix` itself installs Phoenix and is never run by the tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bench import peer, phoenix, report
from bench.payloads import build_templates
from bench.run import SECTIONS, parse

pytestmark = pytest.mark.unit


def test_peer_alone_runs_only_the_side_by_side_section_and_with_only_runs_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("BENCH_ONLY", "BENCH_PEER", "BENCH_PEER_SPANS"):
        monkeypatch.delenv(name, raising=False)
    alone = parse(["--peer", "phoenix"])
    assert (alone.peer, alone.only, alone.peer_spans, alone.peer_senders) == ("phoenix", "", 10_000, 4)
    both = parse(["--only", "embedded", "--peer", "phoenix", "--peer-spans", "2000"])
    assert (both.only, both.peer, both.peer_spans) == ("embedded", "phoenix", 2000)
    default = parse([])
    assert default.peer is None and default.only == ",".join(SECTIONS)
    monkeypatch.setenv("BENCH_PEER", "phoenix")
    assert parse([]).peer == "phoenix"
    with pytest.raises(SystemExit):
        parse(["--peer", "langfuse"])


def test_the_persisted_rate_runs_from_the_first_send_to_the_last_growth() -> None:
    stored = peer.Stored(baseline=800)  # the warm-up's spans were there before the load
    for t, total in [(100.0, 800), (101.0, 1300), (130.0, 5800), (140.0, 5800), (150.0, 5800)]:
        stored.see(total, t)
    assert (stored.spans, stored.grew_at) == (5000, 130.0)
    # 5,000 spans sent from t=100 to t=101, the last stored at t=130: 5000 / 30 s.
    assert peer.persisted_rate(stored.spans, 100.0, 101.0, stored.grew_at) == pytest.approx(5000 / 30)
    # Stored as fast as it was acknowledged: the window is the sending time, never shorter.
    assert peer.persisted_rate(1000, 100.0, 102.0, 101.5) == pytest.approx(500.0)
    assert peer.persisted_rate(0, 100.0, 101.0, 0.0) == 0.0


def test_phoenix_spans_are_counted_in_its_database_read_only(tmp_path: Path) -> None:
    db = tmp_path / "phoenix.db"
    assert phoenix.stored_spans(db) == 0  # not created yet: Phoenix is still starting
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE projects (id INTEGER)")
    assert phoenix.stored_spans(db) == 0  # created, migrations not run yet
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE spans (id INTEGER PRIMARY KEY, span_id TEXT)")
        c.executemany("INSERT INTO spans (span_id) VALUES (?)", [("a",), ("b",), ("c",)])
    assert phoenix.stored_spans(db) == 3
    with pytest.raises(sqlite3.OperationalError):  # read-only: counting can never write
        sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute("DELETE FROM spans")


def test_phoenix_gets_its_own_ports_and_working_dir_and_none_of_the_users_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PHOENIX_SQL_DATABASE_URL", "postgresql://shared-db/phoenix")
    monkeypatch.setenv("PHOENIX_PORT", "6006")
    env = phoenix.phoenix_env(tmp_path, 41001, 41002)
    assert "PHOENIX_SQL_DATABASE_URL" not in env
    assert (env["PHOENIX_WORKING_DIR"], env["PHOENIX_PORT"], env["PHOENIX_GRPC_PORT"]) == (
        str(tmp_path),
        "41001",
        "41002",
    )


def test_one_transport_sends_the_same_spans_as_the_mix() -> None:
    mixed = build_templates("genai", 6, 12, b"\0" * 8, seed=3)
    grpc_only = build_templates("genai", 6, 12, b"\0" * 8, seed=3, transport="grpc")
    assert {t.transport for t in mixed} == {"grpc", "http-protobuf", "http-json"}
    assert {t.transport for t in grpc_only} == {"grpc"}
    assert [(t.spans, t.genai_spans, t.log_records) for t in grpc_only] == [
        (t.spans, t.genai_spans, t.log_records) for t in mixed
    ]


def test_the_summary_prints_both_rates_and_the_ratio_or_why_there_is_none() -> None:
    side = {"acked_spans": 10_000, "persisted_spans": 10_000, "persist_s": 1.0, "accepted_spans_per_s": 1.0}
    results = {
        "peer": {
            "peer": "phoenix",
            "peer_version": "20.26.1",
            "load": {"spans": 10_000, "spans_per_request": 200, "senders": 4},
            "phoenix": dict(side, persisted_spans_per_s=100.0),
            "inferline": dict(side, persisted_spans_per_s=3000.0),
            "ratio_inferline_to_peer": 30.0,
        }
    }
    text = "\n".join(report.summary(results))
    assert "Targets" not in text  # no target was measured in a side-by-side run alone
    assert (
        "phoenix    persisted      100 spans/s" in text
        and "inferline / phoenix: 30.0x persisted spans/s" in text
    )
    failed = "\n".join(report.summary({"peer": {"error": "PeerError: pip install failed"}}))
    assert "Side by side: failed: PeerError: pip install failed" in failed
