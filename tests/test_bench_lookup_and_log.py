"""`python -m bench.lookup_cost` and `python -m bench.local_log_commit`: the look-up of stored
inference rows and the local log's position commit, measured on the real engine and a real log
file. No figure is judged (that is the benchmark's job); each script must run and report."""

from __future__ import annotations

import re

import pytest

from bench import local_log_commit, lookup_cost
from inferline.bus import local_log

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_the_look_up_of_a_flush_is_reported_per_span(capsys: pytest.CaptureFixture[str]) -> None:
    lookup_cost.main(["--flushes", "2", "--copies", "1", "--runs", "2"])
    lines = [line for line in capsys.readouterr().out.splitlines() if "looked up" in line]
    assert len(lines) == 2
    for line in lines:  # rows of a flush not stored: none is found
        assert re.fullmatch(
            r"[\d,]+ inference rows looked up after 2 flushes: \d+\.\d µs/span, \d+ ms, 0 found", line
        )


@pytest.mark.parametrize("mode", ["ON", "FAST"])
def test_a_commit_of_the_local_log_is_timed(mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    connect = local_log._connect
    local_log_commit.main(["--secure-delete", mode, "--rounds", "2", "--entry-kb", "50"])
    assert local_log._connect is connect  # the override ends with the run, not with the process
    out = capsys.readouterr().out
    assert re.fullmatch(
        rf"secure_delete {mode}: commit of 4 MB median \d+\.\d ms, longest \d+\.\d ms; append median "
        r"\d+\.\d ms; CPU \d+\.\d\d s for 0\.01 GB\n",
        out,
    )
