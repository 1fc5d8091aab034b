"""A page's independent reads, started together: each runs in its own session of the project
(inferline.api.sql keeps a few per project), so a page waits for its slowest query rather than
for the sum of them."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
# Shared by every page: bounds the queries the dashboard runs at once, whatever the visitors.
_EXECUTOR = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ui-read")


def start(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
    """`fn(*args, **kwargs)` on the dashboard's reader threads, with the request's context (its
    log fields)."""
    return _EXECUTOR.submit(contextvars.copy_context().run, fn, *args, **kwargs)
