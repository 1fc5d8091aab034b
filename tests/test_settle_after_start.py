"""A started process's long-lived objects leave the cyclic collector's walks (core/memory.py):
without this, every full collection walked them all with the GIL held, which a sender saw as
85-160 ms stalls of the embedded service every 13-20 s under load, and a JSON decoder as 25-40 ms
more on a quarter of its requests (docs/performance.md). Each check runs in a fresh interpreter,
so the test process's own heap is not frozen."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


def _run(code: str) -> list[int]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return [int(x) for x in done.stdout.split()]


def test_what_survives_start_is_out_of_the_collectors_walks_and_new_garbage_is_still_collected() -> None:
    tracked_before, tracked_after, frozen, collected = _run(
        """
import gc
import inferline.service.embedded  # the embedded service's modules, as at its start
from inferline.core.memory import settle_after_start
before = len(gc.get_objects())
settle_after_start()
after = len(gc.get_objects())

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a  # a cycle made after the start: only the collector frees it
del a, b
print(before, after, gc.get_freeze_count(), gc.collect())
"""
    )
    assert tracked_before > 50_000  # the service's modules: what a full collection walked
    assert tracked_after < tracked_before // 20
    assert frozen >= tracked_before * 9 // 10
    assert collected >= 2  # the cycle (and its instance dicts) was freed


def test_json_decoders_and_workers_settle_once_started() -> None:
    decoder_frozen, decoder_tracked, worker_frozen, worker_tracked = _run(
        """
import gc, os
from inferline.core.config import ProcessorSettings
from inferline.service import workers
from inferline.service.processing import native_blocks

workers._init_decoder("warning", os.getppid())
print(gc.get_freeze_count(), len(gc.get_objects()))
gc.unfreeze()
workers._init(ProcessorSettings().model_dump_json(), native_blocks, "warning", os.getppid())
print(gc.get_freeze_count(), len(gc.get_objects()))
"""
    )
    assert decoder_frozen > 20_000 and decoder_tracked < 2_000
    assert worker_frozen > decoder_frozen and worker_tracked < 2_000


def test_collector_pauses_are_timed_by_generation() -> None:
    """`inferline_gc_pause_seconds` is what an operator reads when latency percentiles jump."""
    young_before, young_after, full_before, full_after = _run(
        """
import gc
from prometheus_client import REGISTRY
from inferline.core.memory import observe_collector_pauses

def count(generation):
    return int(REGISTRY.get_sample_value("inferline_gc_pause_seconds_count", {"generation": generation}) or 0)

observe_collector_pauses()
young, full = count("0"), count("2")
junk = [[i] for i in range(20_000)]  # allocations: young collections run by themselves
gc.collect()
print(young, count("0"), full, count("2"))
"""
    )
    assert young_after > young_before  # young collections were timed
    assert full_after == full_before + 1  # the explicit full collection, once


def test_what_outlives_a_unit_of_work_is_frozen_and_cycles_are_still_found() -> None:
    """A worker freezes what survives each batch (its join window); a cycle among frozen objects
    that becomes garbage is freed by the periodic full collection, and acyclic objects at once."""
    tracked, kept_cycle, freed_cycle, freed_plain = _run(
        """
import gc, weakref
from inferline.core.memory import freeze_survivors

class Node:
    pass

window = [{"span": i} for i in range(50_000)]  # what a join window holds
a, b = Node(), Node()
a.other, b.other = b, a
cycle = weakref.ref(a)
plain = Node()
plain_ref = weakref.ref(plain)
freeze_survivors(full_every_s=3600)  # the first call collects, then freezes
tracked = len(gc.get_objects())
del a, b, plain  # garbage now: the plain object at once, the frozen cycle not yet
gc.collect()
kept = cycle() is not None
freeze_survivors(full_every_s=0)  # the periodic full collection
print(tracked, int(kept), int(cycle() is None), int(plain_ref() is None))
"""
    )
    assert tracked < 1_000  # the window's 50k dicts are out of the collector's walks
    assert kept_cycle == 1  # frozen: a collection between full ones does not see it
    assert freed_cycle == 1  # the full collection does
    assert freed_plain == 1


def test_a_worker_batch_runs_without_automatic_collections_and_frees_its_cycles_at_the_end() -> None:
    """A worker's batch (`collector_deferred`): its ~100 objects per span are not walked by young
    collections while it runs (6-7% of a worker's CPU, docs/performance.md); a cycle it leaves
    is freed as it ends, what outlives it is frozen, and the collector is on again afterwards."""
    during, cycle_freed, tracked, enabled_after, garbage_after = _run(
        """
import gc, weakref
from inferline.core.memory import collector_deferred, settle_after_start

settle_after_start()  # as a worker does once started (a full collection now, not at the batch)

class Node:
    pass

collections = []
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info["generation"]))
window = []
with collector_deferred(full_every_s=3600):
    for i in range(200_000):  # a batch's rows: many tracked objects, most freed at once
        row = {"span": i, "attributes": {"k": str(i)}}
        if i % 10 == 0:
            window.append(row)  # what the join window keeps
    a, b = Node(), Node()
    a.other, b.other = b, a
    cycle = weakref.ref(a)
    del a, b
    during = len(collections)
print(during, int(cycle() is None), len(gc.get_objects()), int(gc.isenabled()), gc.collect())
"""
    )
    assert during == 0  # no collection while the batch ran
    assert cycle_freed == 1  # the batch's cycle is gone once it ended
    assert tracked < 5_000  # the 20,000 kept rows are frozen, out of the walks
    assert enabled_after == 1
    assert garbage_after == 0
