"""`python -m bench.worker_path`: a worker's path in one process, with the collector as workers
run it (deferred) and as they did before (automatic). No figure is judged (that is the
benchmark's job); the script must run and report, and the deferred run must make no automatic
collection during a batch. It runs in a process of its own: it freezes its heap as a worker does,
which in the test process would keep earlier tests' garbage (their clients among it) for good."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

_LINE = (
    r"(genai|plain), collector (deferred|automatic): (\d+\.\d )+µs/span; collector \d+\.\d% of the CPU "
    r"\((\d+) young, (\d+) middle, (\d+) full collections\)\n"
)


@pytest.mark.parametrize("collector", ["deferred", "automatic"])
def test_the_worker_path_is_timed_with_its_collector(collector: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.worker_path", "--requests", "12", "--collector", collector],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    match = re.fullmatch(_LINE, done.stdout)
    assert match is not None, done.stdout
    young, middle = int(match.group(4)), int(match.group(5))
    batches = 3  # 12 requests with their log records: 24 entries, 8 a batch
    if collector == "deferred":  # a young collection as each batch ends (and one may follow it)
        assert young < 2 * batches and middle == 0
    else:
        assert young > 5 * batches  # Python collected during the batches
