"""The writers' flush delay follows the inserts' cost, within its bounds."""

from __future__ import annotations

import pytest

from inferline.exporters.clickhouse.flush_policy import FlushDelay

pytestmark = pytest.mark.unit


def test_cheap_inserts_flush_at_the_shortest_delay() -> None:
    delay = FlushDelay(min_s=0.05, max_s=1.0)
    assert delay.seconds == 0.05  # nothing measured yet: acknowledge quickly
    delay.observe(0.005)
    assert delay.seconds == 0.05


def test_dear_inserts_wait_four_times_their_cost() -> None:
    delay = FlushDelay(min_s=0.05, max_s=1.0)
    delay.observe(0.1)
    assert delay.seconds == pytest.approx(0.4)


def test_the_wait_never_passes_the_longest_delay_and_recovers() -> None:
    delay = FlushDelay(min_s=0.05, max_s=1.0)
    delay.observe(2.0)  # a stalled insert
    assert delay.seconds == 1.0
    for _ in range(30):
        delay.observe(0.01)
    assert delay.seconds == 0.05


def test_a_fixed_delay_stays_fixed() -> None:
    delay = FlushDelay(min_s=0.2, max_s=0.2)
    delay.observe(5.0)
    assert delay.seconds == 0.2
