"""A rule's state from one evaluation to the next, without flapping.

    ok / resolved --breached--> pending --held `for_minutes`--> firing --not breached--> resolved
    pending --not breached--> ok

`pending` is internal (the API shows it, with `since`); only `firing` and `resolved` are
transitions, written to the history and sent to webhooks. A rule with `for_minutes = 0` fires at
the first evaluation that finds its condition.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

Status = Literal["ok", "pending", "firing", "resolved"]
Transition = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True)
class RuleState:
    status: Status = "ok"
    since: datetime | None = None  # when the condition started to hold (pending, firing)
    value: float | None = None
    calls: int = 0
    evaluated_at: datetime | None = None


def step(
    state: RuleState, breached: bool, now: datetime, for_minutes: int, value: float | None, calls: int
) -> tuple[RuleState, Transition | None]:
    """The next state and the transition made, if any."""
    seen = replace(state, value=value, calls=calls, evaluated_at=now)
    if breached:
        if state.status == "firing":
            return seen, None
        since = state.since if state.status == "pending" and state.since is not None else now
        if now - since >= timedelta(minutes=for_minutes):
            return replace(seen, status="firing", since=since), "firing"
        return replace(seen, status="pending", since=since), None
    if state.status == "firing":
        return replace(seen, status="resolved", since=None), "resolved"
    if state.status == "pending":
        return replace(seen, status="ok", since=None), None
    return seen, None
