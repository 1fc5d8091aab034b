"""User, session, tenant and tags a model call inherits from the ancestor spans of its trace.

Applications often set `user.id` / `session.id` (or OpenLLMetry association properties, AI SDK
telemetry metadata, ...) on their own request span, above the model call. A row takes, for each of
user, session and tenant, the first of: the model span itself, its nearest ancestor naming one, the
resource. Tags and labels of those ancestors are added under the row's own.

Ancestors can arrive before the model span, with it, or after it, in another request. Every span
seen is kept for the join window as a link (its parent, and what it names). A row whose chain of
ancestors is not complete (a parent not seen yet) and that misses a user, session or tenant waits
for the missing span; when it arrives the chain is walked again and, if that changes the row, a new
version of the row is emitted (the same mechanism as late log content, `EmittedRow`).

As in `content_join`, every entry remembers the Kafka offsets of the records it came from, and the
processor commits no further than the lowest held one, so a restart replays what only lived here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Final, NamedTuple

from inferline.core.records import Row
from inferline.processors.conventions.content_join import (
    EmittedRow,
    JoinKey,
    OffsetHolds,
    Origins,
    Partition,
)

_MAX_DEPTH: Final = 64  # a deeper chain (or a cycle in bad input) stops the walk


class Inherited(NamedTuple):
    """What a span passes on to the model calls under it; "" / empty where it names nothing."""

    user_id: str
    session_id: str
    tenant_id: str
    tags: dict[str, str]
    labels: list[str]


class Link:
    __slots__ = ("deadline", "origins", "parent", "values")

    def __init__(self, parent: str, values: Inherited | None, deadline: float, origins: Origins) -> None:
        self.parent = parent
        self.values = values
        self.deadline = deadline
        self.origins = origins


class Waiter:
    """A row whose ancestors are not all known yet, and what recomputing its attribution needs."""

    __slots__ = ("deadline", "emitted", "origins", "own", "parent", "project", "resource", "trace")

    def __init__(
        self,
        emitted: EmittedRow,
        project: str,
        trace: str,
        parent: str,
        own: Inherited,
        resource: tuple[str, str, str],
        origins: Origins,
    ) -> None:
        self.emitted = emitted
        self.project = project
        self.trace = trace
        self.parent = parent
        self.own = own
        self.resource = resource
        self.origins = origins
        self.deadline = 0.0


def needs_ancestors(own: Inherited) -> bool:
    """A row keeps waiting for ancestors only while the span itself leaves user, session or tenant open."""
    return not (own.user_id and own.session_id and own.tenant_id)


def attributed(own: Inherited, found: list[Inherited], resource: tuple[str, str, str]) -> dict[str, Any]:
    """The row's attribution columns: span > nearest ancestor > resource; tags and labels of the
    span first, then of the ancestors from the nearest up."""
    # Plain loops, not generators: `found` is short (most often one ancestor).
    user, session, tenant = own.user_id, own.session_id, own.tenant_id
    if not (user and session and tenant):
        for f in found:  # nearest first: the first naming one wins
            user = user or f.user_id
            session = session or f.session_id
            tenant = tenant or f.tenant_id
    user = user or resource[0]
    session = session or resource[1]
    tenant = tenant or resource[2]
    tags = own.tags
    labels = own.labels
    if found:
        tags = {}
        for f in reversed(found):
            tags.update(f.tags)
        tags.update(own.tags)
        labels = list(own.labels)
        for f in found:
            for x in f.labels:
                if x not in labels:
                    labels.append(x)
    return {"user_id": user, "session_id": session, "tenant_id": tenant, "tags": tags, "labels": labels}


def changes(row: Row, fields: dict[str, Any]) -> bool:
    return any(row.get(k) != v for k, v in fields.items())


class Ancestry:
    """Links of recent spans and rows waiting for a missing ancestor. Not thread-safe. Insertion order
    is deadline order for both maps, so expiry and eviction take from the front."""

    __slots__ = ("_holds", "_links", "_waiting", "_woken", "max_links", "max_waiting", "window_s")

    def __init__(self, window_s: float, max_links: int, max_waiting: int) -> None:
        self.window_s = window_s
        self.max_links = max_links
        self.max_waiting = max_waiting
        # OrderedDicts, not dicts: taking from the front of a dict is O(n) once entries were
        # deleted there (iteration skips the freed slots), which made eviction quadratic and
        # cost plain spans most of their CPU (py-spy, 43% of the service's samples).
        self._links: OrderedDict[JoinKey, Link] = OrderedDict()
        # missing ancestor -> the rows waiting for it
        self._waiting: OrderedDict[JoinKey, list[Waiter]] = OrderedDict()
        self._woken: list[JoinKey] = []
        self._holds = OffsetHolds()

    @property
    def links_size(self) -> int:
        return len(self._links)

    @property
    def waiting_size(self) -> int:
        return sum(len(w) for w in self._waiting.values())

    def held_offsets(self) -> dict[Partition, int]:
        return self._holds.minimum()

    def record(
        self, key: JoinKey, parent: str, values: Inherited | None, now: float, origins: Origins
    ) -> None:
        """A span seen: its parent, and what it passes on (None: nothing)."""
        old = self._links.pop(key, None)
        if old is not None and old.origins:
            self._holds.release(old.origins)
        if origins:
            self._holds.hold(origins)
        self._links[key] = Link(parent, values, now + self.window_s, origins)
        if key in self._waiting:
            self._woken.append(key)

    def resolve(self, project: str, trace: str, parent: str) -> tuple[list[Inherited], JoinKey | None]:
        """What the ancestors above `parent` pass on, nearest first, and the first ancestor not seen
        yet (None: the chain reaches the root)."""
        found: list[Inherited] = []
        links = self._links
        for _ in range(_MAX_DEPTH):
            if not parent:
                return found, None
            key = (project, trace, parent)
            link = links.get(key)
            if link is None:
                return found, key
            if link.values is not None:
                found.append(link.values)
            parent = link.parent
        return found, None

    def wait(self, missing: JoinKey, waiter: Waiter, now: float, hold: bool) -> None:
        """`waiter` waits for the span `missing`. `hold`: its origins are not held yet."""
        waiter.deadline = now + self.window_s
        if hold and waiter.origins:
            self._holds.hold(waiter.origins)
        waiters = self._waiting.pop(missing, None) or []  # re-inserted at the end: deadline order
        waiters.append(waiter)
        self._waiting[missing] = waiters

    def woken(self) -> list[Waiter]:
        """The waiters whose missing ancestor was recorded since the last call (no longer waiting:
        wait them again, or `done` them)."""
        out: list[Waiter] = []
        for key in self._woken:
            out.extend(self._waiting.pop(key, ()))
        self._woken.clear()
        return out

    def done(self, waiter: Waiter) -> None:
        if waiter.origins:
            self._holds.release(waiter.origins)

    def expire(self, now: float) -> None:
        links = self._links
        while links:
            k = next(iter(links))
            link = links[k]
            if link.deadline > now:
                break
            del links[k]
            if link.origins:
                self._holds.release(link.origins)
        waiting = self._waiting
        while waiting:
            k = next(iter(waiting))
            waiters = waiting[k]
            if waiters[-1].deadline > now:
                break
            del waiting[k]
            for w in waiters:
                self.done(w)

    def bound(self) -> None:
        links = self._links
        excess = len(links) - self.max_links
        while excess > 0:
            origins = links.popitem(last=False)[1].origins
            if origins:
                self._holds.release(origins)
            excess -= 1
        waiting = self._waiting
        excess = len(waiting) - self.max_waiting
        while excess > 0:
            for w in waiting.popitem(last=False)[1]:
                self.done(w)
            excess -= 1

    def forget(self, partitions: Iterable[Partition]) -> int:
        """Drop every entry built from a record of `partitions` (revoked)."""
        gone = set(partitions)
        if not gone:
            return 0
        dropped = 0
        for k in [k for k, link in self._links.items() if link.origins and not gone.isdisjoint(link.origins)]:
            self._holds.release(self._links.pop(k).origins)  # type: ignore[arg-type]
            dropped += 1
        for k in list(self._waiting):
            keep = []
            for w in self._waiting[k]:
                if w.origins and not gone.isdisjoint(w.origins):
                    self.done(w)
                    dropped += 1
                else:
                    keep.append(w)
            if keep:
                self._waiting[k] = keep
            else:
                del self._waiting[k]
        return dropped
