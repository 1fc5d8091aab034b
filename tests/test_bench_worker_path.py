"""`python -m bench.worker_path`: a worker's path in one process, with the collector as workers
run it (deferred) and as they did before (automatic). No figure is judged (that is the
benchmark's job); the script must run and report, and the deferred run must make no automatic
collection during a batch."""

from __future__ import annotations

import re

import pytest

from bench import worker_path

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

_LINE = (
    r"(genai|plain), collector (deferred|automatic): (\d+\.\d )+µs/span; collector \d+\.\d% of the CPU "
    r"\((\d+) young, (\d+) middle, (\d+) full collections\)\n"
)


@pytest.mark.parametrize("collector", ["deferred", "automatic"])
def test_the_worker_path_is_timed_with_its_collector(
    collector: str, capsys: pytest.CaptureFixture[str]
) -> None:
    worker_path.main(["--kind", "genai", "--requests", "12", "--collector", collector])
    match = re.fullmatch(_LINE, capsys.readouterr().out)
    assert match is not None
    young, middle = int(match.group(4)), int(match.group(5))
    batches = 3  # 12 requests with their log records: 24 entries, 8 a batch
    if collector == "deferred":  # a young collection as each batch ends (and one may follow it)
        assert young < 2 * batches and middle == 0
    else:
        assert young > 5 * batches  # Python collected during the batches
