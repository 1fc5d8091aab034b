"""Rows → columns (values fitted to their types) → one block of ClickHouse's Native format,
written with clickhouse-connect's column serialisers.

Native is what ClickHouse reads fastest and what clickhouse-connect builds inside every insert;
building it ourselves lets the embedded service's worker processes do that work and hand the
writer bytes it only has to pass to the engine (`NativeInserter`). Blocks of the same table
concatenate into one valid Native stream.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import cache
from typing import Any

import orjson
import structlog
from clickhouse_connect.datatypes.base import ClickHouseType
from clickhouse_connect.datatypes.registry import get_from_name
from clickhouse_connect.driver.common import write_leb128
from clickhouse_connect.driver.insert import InsertContext

from inferline.core import metrics
from inferline.core.records import Row
from inferline.storage.schema import JSON_COLUMNS, Column, Table

log = structlog.get_logger()


def to_columns(table: Table, rows: list[Row]) -> tuple[list[str], list[Sequence[Any]]]:
    insert_columns = table.insert_columns
    columns: list[Sequence[Any]]
    try:
        # Rows from the processor chain carry every column: transposed at C speed (~2.5x faster
        # than a .get per value, bench stage "encode Native blocks").
        columns = list(zip(*map(_getter(table), rows), strict=True)) if rows else []
    except KeyError:  # rows from elsewhere (feedback, ledger, tests) may leave columns out
        columns = [_column(rows, c.name, c.empty) for c in insert_columns]
    if not columns:
        columns = [() for _ in insert_columns]
    names, data = [], []
    for col, values in zip(insert_columns, columns, strict=True):
        name, empty = col.name, col.empty
        if name in JSON_COLUMNS:
            # Bytes all through: the String serialiser writes bytes as they are, so orjson's
            # output is not decoded to str only to be encoded back.
            values = [v.encode() if isinstance(v, str) else orjson.dumps(v) for v in values]
        elif empty is not None and None in values:  # NULL is only legal in Nullable columns
            values = [empty if v is None else v for v in values]
        limits = col.limits
        if limits is not None and values:
            values = _fit(table.name, col, values, limits)
        names.append(name)
        data.append(values)
    return names, data


def _column(rows: list[Row], name: str, empty: Any) -> list[Any]:
    return [row.get(name, empty) for row in rows]


@cache
def _getter(table: Table) -> Callable[[Row], tuple[Any, ...]]:
    """A row's values in insert-column order (KeyError when one is missing)."""
    names = [c.name for c in table.insert_columns]
    if len(names) == 1:  # itemgetter of one name returns the value, not a 1-tuple
        return lambda row: (row[names[0]],)
    return operator.itemgetter(*names)


def _fit(table: str, col: Column, values: Sequence[Any], limits: tuple[Any, Any]) -> Sequence[Any]:
    """Values the column cannot hold (a token count of 1e25, a severity of 300) become the empty
    value (a map's entry is left out), counted in a metric: one absurd value must not fail the
    insert of everyone's batch.
    The common case, everything in range, costs a min() and a max() at C speed."""
    lo, hi = limits
    nested = col.type.startswith("Array(")
    mapped = col.type.startswith("Map(")
    try:
        flat: Sequence[Any]
        if nested:
            flat = [v for vs in values for v in vs]
        elif mapped:
            flat = [v for d in values for v in d.values()]
        else:
            flat = values
        present = [v for v in flat if v is not None] if col.type.startswith("Nullable(") else flat
        if not present or (lo <= min(present) and max(present) <= hi):
            return values
    except TypeError:
        pass  # a value of the wrong type: checked one by one below
    empty = col.empty if not nested else 0

    def ok(v: Any) -> bool:
        return isinstance(v, (int, Decimal)) and not isinstance(v, bool) and lo <= v <= hi

    fitted: list[Any]
    if nested:
        fitted = [[v if ok(v) else empty for v in vs] for vs in values]
    elif mapped:  # an entry nobody can store is left out: a count of 0 would be a false figure
        fitted = [d if all(map(ok, d.values())) else {k: v for k, v in d.items() if ok(v)} for d in values]
    else:
        fitted = [v if v is None or ok(v) else empty for v in values]
    metrics.VALUES_OUT_OF_RANGE.labels(table, col.name).inc()
    log.warning("values out of the column's range were emptied", table=table, column=col.name)
    return fitted


@cache
def _header(table: Table) -> tuple[tuple[bytes, ClickHouseType], ...]:
    """Per column: its name and type as the block spells them, and its serialiser."""
    out = []
    for col in table.insert_columns:
        ch_type = get_from_name(col.type)
        name, type_name = col.name.encode(), ch_type.insert_name.encode()
        prefix = bytearray()
        write_leb128(len(name), prefix)
        prefix += name
        write_leb128(len(type_name), prefix)
        prefix += type_name
        out.append((bytes(prefix), ch_type))
    return tuple(out)


def encode_block(table: Table, rows: list[Row]) -> bytes:
    """One Native block holding `rows` (values fitted to their columns as the writer does)."""
    _, data = to_columns(table, rows)
    header = _header(table)
    context = _context(table)
    head = bytearray()
    write_leb128(len(header), head)
    write_leb128(len(rows), head)
    # Each column in a buffer of its own, joined once: appended to one buffer, the block was
    # copied again each time the buffer grew (realloc), megabytes per batch.
    parts: list[bytes | bytearray] = [head]
    for (prefix, ch_type), values in zip(header, data, strict=True):
        column = bytearray()
        context.start_column(ch_type.name)
        ch_type.write_column(values, column, context)
        parts.append(prefix)
        parts.append(column)
    return b"".join(parts)


@cache
def _context(table: Table) -> InsertContext:
    # The serialisers read only format options from the context.
    names = [c.name for c in table.insert_columns]
    return InsertContext(table.name, names, [h[1] for h in _header(table)], column_oriented=True)


def column_list(table: Table) -> str:
    return ", ".join(f"`{c.name}`" for c in table.insert_columns)


def block_rows(block: bytes) -> int:
    """The row count written in a block's header (after the column count)."""
    pos = _skip_leb128(block, 0)
    value, shift = 0, 0
    while True:
        byte = block[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value
        shift += 7


def _skip_leb128(data: Any, pos: int) -> int:
    while data[pos] & 0x80:
        pos += 1
    return pos + 1
