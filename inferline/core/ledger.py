"""The ingest ledger: per project, minute (when the receiver accepted the data) and signal, how many
records were accepted, rejected (by reason), corrected (by reason), stored and dead-lettered, so an
operator can show that what senders were told was accepted is stored or dead-lettered.

Counts travel with the data they describe, through the same durable log, and are inserted in the
same flush as the rows (last, under the flush's deduplication token), one row per entry and
outcome keyed by the entry's source position: a flush that is stored is counted, and a replay
(an exact rebuild, or a processor that publishes a range again) replaces rows instead of adding.

- `accepted`: the records of a durable entry (a local-log entry, a raw Kafka message): exactly
  what the receiver kept of a request and acknowledged.
- `rejected`, `corrected`: decided by the receiver before the acknowledgement; carried in a
  small `LEDGER` entry (local log) or a message header (Kafka).
- `stored`: the records of an entry that became rows of `otel_traces` / `otel_logs`.
- `dead_lettered`: the records of an entry that did not (with the reason), kept in the
  dead-letter table or topic.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

import orjson

ACCEPTED, REJECTED, CORRECTED, STORED, DEAD_LETTERED = (
    "accepted",
    "rejected",
    "corrected",
    "stored",
    "dead_lettered",
)
SPANS_SIGNAL, LOGS_SIGNAL = "spans", "logs"
HEADER = "inferline-ledger"  # the Kafka header that carries a request's `ReceiverTally`


class LedgerKey(NamedTuple):
    project_id: str
    minute: int  # unix seconds at the start of the minute the receiver accepted the data
    signal: str
    outcome: str
    reason: str
    source: str  # "topic/partition/offset" of the durable entry counted


def minute_of(unix_seconds: float) -> int:
    return int(unix_seconds) // 60 * 60


class EntryKey(NamedTuple):
    """What the ledger rows of one durable entry share."""

    project_id: str
    minute: int
    source: str


@dataclass(slots=True)
class ReceiverTally:
    """What the receiver decided about one request's records beside accepting them."""

    signal: str
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> records
    corrected: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.rejected or self.corrected)

    def encode(self) -> bytes:
        return orjson.dumps({"signal": self.signal, "rejected": self.rejected, "corrected": self.corrected})

    @classmethod
    def decode(cls, data: bytes) -> ReceiverTally:
        value = orjson.loads(data)
        if not isinstance(value, dict) or value.get("signal") not in (SPANS_SIGNAL, LOGS_SIGNAL):
            raise ValueError("not a ledger tally")
        return cls(value["signal"], _counts(value.get("rejected")), _counts(value.get("corrected")))


def _counts(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int) and v > 0}


class Ledger:
    """Counts of one run of entries, by `LedgerKey`; becomes rows of `ingest_ledger`."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: Counter[LedgerKey] = Counter()

    def add(self, entry: EntryKey, signal: str, outcome: str, records: int, reason: str = "") -> None:
        if records:
            key = LedgerKey(entry.project_id, entry.minute, signal, outcome, reason, entry.source)
            self.counts[key] += records

    def add_tally(self, entry: EntryKey, tally: ReceiverTally) -> None:
        for reason, n in tally.rejected.items():
            self.add(entry, tally.signal, REJECTED, n, reason)
        for reason, n in tally.corrected.items():
            self.add(entry, tally.signal, CORRECTED, n, reason)

    def rows(self) -> list[dict[str, object]]:
        return [{**key._asdict(), "records": n} for key, n in self.counts.items() if n > 0]
