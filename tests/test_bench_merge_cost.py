"""`python -m bench.merge_cost`: the engine's CPU for inserts and their merges, parts left and
query times, for the service's schema in a real chDB store. No figure is judged (that is the
benchmark's job); the script must run and report each of them."""

from __future__ import annotations

import re

import pytest

from bench import merge_cost

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_a_short_run_reports_the_engine_cpu_parts_and_queries(capsys: pytest.CaptureFixture[str]) -> None:
    merge_cost.main(["--flushes", "3", "--copies", "1", "--settings", "merge_selector_base=10"])
    out = capsys.readouterr().out
    assert re.search(r"^merge_selector_base=10: 2,400 spans in \d+ s$", out, re.M)
    assert re.search(r"engine CPU \d+\.\d µs/span", out)
    (parts_line,) = [line for line in out.splitlines() if line.startswith("  active parts ")]
    parts = dict(re.findall(r"(otel_traces|otel_logs|llm_inferences) (\d+)", parts_line))
    assert set(parts) == {"otel_traces", "otel_logs", "llm_inferences"} and all(
        int(n) >= 1 for n in parts.values()
    )
    for name in merge_cost.QUERIES:
        assert re.search(rf"{re.escape(name)}\s+\d+\.\d ms", out)


def test_settings_that_the_engine_does_not_know_are_refused() -> None:
    with pytest.raises(Exception, match="merge_selector_bsae"):
        merge_cost.main(["--flushes", "1", "--copies", "1", "--settings", "merge_selector_bsae=10"])
