"""The ingest ledger of the caller's project (`inferline.core.ledger`): per minute and signal,
records accepted, rejected, corrected, stored and dead-lettered, and how many accepted records
are not accounted for yet (in flight, or lost: a minute that stays unbalanced is a bug)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from inferline.api.deps import CallerDep, ContextDep, audit
from inferline.api.errors import documented
from inferline.core.ledger import ACCEPTED, CORRECTED, DEAD_LETTERED, REJECTED, STORED

router = APIRouter(prefix="/api/v1/ledger", tags=["ledger"], responses=documented(401, 504))

MAX_MINUTES = 10_080  # a week of minutes per request


class LedgerMinute(BaseModel):
    minute: datetime = Field(description="start of the minute the receiver accepted the records (UTC)")
    signal: str = Field(description="spans or logs")
    received: int = Field(description="accepted + rejected: records senders sent")
    accepted: int = Field(description="records senders were told were accepted")
    rejected: dict[str, int] = Field(description="records refused to the sender, by reason")
    corrected: dict[str, int] = Field(description="records stored with a documented correction, by reason")
    stored: int
    dead_lettered: dict[str, int] = Field(description="accepted records kept as dead letters, by reason")
    unaccounted: int = Field(description="accepted − stored − dead-lettered: in flight, else lost")


class Ledger(BaseModel):
    minutes: list[LedgerMinute]
    accepted: int
    stored: int
    dead_lettered: int
    unaccounted: int
    balanced: bool = Field(description="every accepted record of the range is stored or dead-lettered")


@router.get("", response_model=Ledger, summary="Ingest ledger of the key's project")
def read_ledger(
    who: CallerDep,
    ctx: ContextDep,
    since: Annotated[datetime | None, Query(description="default: an hour ago")] = None,
    until: Annotated[datetime | None, Query(description="default: now")] = None,
) -> Ledger:
    end = _clamp(_utc(until)) if until else datetime.now(UTC)
    start = _clamp(_utc(since)) if since else end - timedelta(hours=1)
    if start > end:  # an empty ledger would read "balanced"
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "since"), "msg": "since is after until", "input": None}]
        )
    rows = ctx.sql.rows(
        who.project_id,
        "SELECT minute, signal, outcome, reason, sum(records) AS records FROM ingest_ledger FINAL "
        "WHERE project_id = {project:String} AND minute >= toStartOfMinute({start:DateTime('UTC')}) "
        "AND minute <= {end:DateTime('UTC')} "
        f"GROUP BY minute, signal, outcome, reason ORDER BY minute, signal LIMIT {MAX_MINUTES * 40}",
        {"project": who.project_id, "start": f"{start:%Y-%m-%d %H:%M:%S}", "end": f"{end:%Y-%m-%d %H:%M:%S}"},
    )
    minutes: dict[tuple[datetime, str], LedgerMinute] = {}
    for row in rows:
        minute = row["minute"]  # 'YYYY-MM-DD hh:mm:ss', UTC
        key = (
            _utc(minute if isinstance(minute, datetime) else datetime.fromisoformat(minute)),
            row["signal"],
        )
        m = minutes.get(key)
        if m is None:
            m = minutes[key] = LedgerMinute(
                minute=key[0],
                signal=row["signal"],
                received=0,
                accepted=0,
                rejected={},
                corrected={},
                stored=0,
                dead_lettered={},
                unaccounted=0,
            )
        n, outcome, reason = int(row["records"]), row["outcome"], row["reason"]
        if outcome == ACCEPTED:
            m.accepted += n
        elif outcome == STORED:
            m.stored += n
        elif outcome in (REJECTED, CORRECTED, DEAD_LETTERED):
            counts = getattr(m, outcome)
            counts[reason] = counts.get(reason, 0) + n
    for m in minutes.values():
        m.received = m.accepted + sum(m.rejected.values())
        m.unaccounted = m.accepted - m.stored - sum(m.dead_lettered.values())
    listed = list(minutes.values())
    audit(who, "ledger.read", rows=len(listed))
    accepted = sum(m.accepted for m in listed)
    stored = sum(m.stored for m in listed)
    dead = sum(sum(m.dead_lettered.values()) for m in listed)
    return Ledger(
        minutes=listed,
        accepted=accepted,
        stored=stored,
        dead_lettered=dead,
        unaccounted=accepted - stored - dead,
        balanced=all(m.unaccounted == 0 for m in listed),
    )


# What the table's DateTime minute can hold.
_EARLIEST, _LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2106, 2, 7, tzinfo=UTC)


def _clamp(t: datetime) -> datetime:
    return min(max(t, _EARLIEST), _LATEST)


def _utc(t: datetime) -> datetime:
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)
