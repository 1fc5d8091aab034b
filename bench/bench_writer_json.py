"""What the Kafka writer's row work costs, and what it would cost if ClickHouse parsed the enriched
NDJSON itself. Run: `python bench/bench_writer_json.py`.

The writer decodes each enriched line in Python (orjson, the decimal columns, the type check that
lets a bad record be dead-lettered alone), encodes Native blocks and inserts them. The alternative
measured here hands the lines, as they came from Kafka, to ClickHouse (`JSONEachRow`, strict:
numbers, booleans, objects and arrays are not read as strings; DateTime64 columns read as the
integer nanoseconds the format carries), either converted to Native blocks (`file()` → Native,
what the writer's flush would insert) or inserted directly (`INSERT … SELECT … FROM file()`).

Figures are CPU µs per GenAI span (every thread of the process, chDB's included) over the spans'
and logs' lines of the bench's GenAI requests, the best of a few runs.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.stages import PROJECT, _requests
from inferline.core.config import KafkaSettings
from inferline.core.logging import configure_logging
from inferline.core.records import Batch
from inferline.exporters.clickhouse.inserter import Inserter
from inferline.exporters.clickhouse.native import encode_block
from inferline.exporters.kafka.enriched import EnrichedLines, EnrichedMessages
from inferline.otlp.flatten import flatten_logs, flatten_spans
from inferline.otlp.json_codec import decode_protobuf
from inferline.processors.chain import ProcessorChain
from inferline.service.writer_role import _decoded_row
from inferline.storage.clickhouse import connect
from inferline.storage.schema import OTEL_LOGS, OTEL_TRACES, Table, migrate

# Strict JSON reading, so that ClickHouse refuses what the writer's check refuses.
STRICT = (
    " SETTINGS input_format_json_read_numbers_as_strings = 0, input_format_json_read_bools_as_numbers = 0,"
    " input_format_json_read_bools_as_strings = 0, input_format_json_read_objects_as_strings = 0,"
    " input_format_json_read_arrays_as_strings = 0, input_format_skip_unknown_fields = 1,"
    " input_format_null_as_default = 1, input_format_parallel_parsing = 0"
)


def _checked_rows(lines: list[bytes], table: Table) -> list[Any]:
    """The writer's reading of a message's lines: decoded, then checked together."""
    rows = [_decoded_row(x, table) for x in lines]
    assert not table.problems(rows)
    return rows


def _structure(table: Table) -> tuple[str, str]:
    """The lines' structure for ClickHouse, and the select that makes the table's columns of it."""
    structure, select = [], []
    for c in table.insert_columns:
        name = f"`{c.name}`"
        if c.type == "DateTime64(9)":
            structure.append(f"{name} Int64")
            select.append(f"fromUnixTimestamp64Nano({name}, 'UTC') AS {name}")
        elif c.type == "Array(DateTime64(9))":
            structure.append(f"{name} Array(Int64)")
            select.append(f"arrayMap(x -> fromUnixTimestamp64Nano(x, 'UTC'), {name}) AS {name}")
        else:
            structure.append(f"{name} {c.type}")
            select.append(name)
    return ", ".join(structure), ", ".join(select)


def _lines(spans_per_request: int = 200, requests: int = 4) -> tuple[int, dict[Table, list[bytes]]]:
    """The enriched lines of the bench's GenAI requests after the whole processor chain."""
    proto = _requests("genai", "grpc", requests, spans_per_request)
    chain = ProcessorChain()
    batch = Batch()
    spans = 0
    for body, logs, n in proto:
        spans += n
        batch.extend(
            chain.run(flatten_spans(decode_protobuf(body, ExportTraceServiceRequest), PROJECT).records, [])
        )
        if logs:
            log_request = decode_protobuf(logs, ExportLogsServiceRequest)
            batch.extend(chain.run([], flatten_logs(log_request, PROJECT).records))
    tables = {"inferline.spans": OTEL_TRACES, "inferline.logs": OTEL_LOGS}
    out: dict[Table, list[bytes]] = {OTEL_TRACES: [], OTEL_LOGS: []}
    for group in EnrichedMessages.for_topics(KafkaSettings())(batch):
        assert isinstance(group, EnrichedLines)
        if group.topic in tables:
            out[tables[group.topic]] += [line for _, line in group.lines]
    return spans, out


def _best(f: Callable[[], object], runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.process_time()
        f()
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    configure_logging("error")
    spans, lines = _lines()
    size = sum(len(x) for ls in lines.values() for x in ls)
    count = sum(map(len, lines.values()))
    print(f"{spans} GenAI spans: {count} span and log lines, {size / spans:,.0f} bytes/span")
    with tempfile.TemporaryDirectory() as tmp:
        client = connect(f"chdb://{tmp}/clickhouse")
        migrate(client)
        inserter = Inserter(client)
        path = Path(tmp) / "lines.ndjson"

        def python_rows() -> list[bytes]:
            return [encode_block(t, _checked_rows(ls, t)) for t, ls in lines.items()]

        def clickhouse_native() -> list[bytes]:
            out = []
            for t, ls in lines.items():
                path.write_bytes(b"\n".join(ls))
                structure, select = _structure(t)
                query = f"SELECT {select} FROM file('{path}', JSONEachRow, '{structure}'){STRICT}"
                out.append(client.raw_query(query, fmt="Native"))
            return out

        def python_insert() -> None:
            batch = Batch(
                spans=_checked_rows(lines[OTEL_TRACES], OTEL_TRACES),
                logs=_checked_rows(lines[OTEL_LOGS], OTEL_LOGS),
            )
            inserter.insert(batch, uuid.uuid4().hex)

        def clickhouse_insert() -> None:
            token = uuid.uuid4().hex
            for t, ls in lines.items():
                path.write_bytes(b"\n".join(ls))
                structure, select = _structure(t)
                columns = ", ".join(f"`{c.name}`" for c in t.insert_columns)
                client.command(
                    f"INSERT INTO `{t.name}` ({columns}) SELECT {select} FROM file('{path}', JSONEachRow, "
                    f"'{structure}'){STRICT}, insert_deduplication_token = '{token}:{t.name}'"
                )

        for label, f in (
            ("Python: orjson + check + Native encode", python_rows),
            ("ClickHouse: JSONEachRow → Native", clickhouse_native),
            ("Python path + Native insert", python_insert),
            ("ClickHouse: INSERT … SELECT FROM file()", clickhouse_insert),
        ):
            print(f"  {label:<44} {_best(f) / spans * 1e6:7.1f} µs/span")
        client.close()


if __name__ == "__main__":
    main()
