"""A processor restart inside the content-join window loses no content.

Receiver, processor and writer as separate OS processes on librdkafka's mock cluster. GenAI content
that arrives as OTel <=1.36 log events is joined to its span in the processor's memory; the processor
holds its commit back to the records that memory depends on, so a processor stopped and replaced
between the logs and the span (or between the span and its late logs) replays them and the inference
still gets its messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import orjson
import pytest

from inferline.processors.normalise import inference_id
from tests.conftest import wait_for
from tests.kafka_helpers import Backend, Role, consume_records, of_trace, role_env, start_backend
from tests.otlp_helpers import json_span, logs_json, new_span_id, new_trace_id, traces_json

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.timeout(240)]

KEY, PROJECT = "test-key-join-restart", "proj-join"
INFERENCES, LOGS = "inferline.inferences", "inferline.logs"
PROMPT, ANSWER = "What is the capital of France?", "Paris."


@dataclass
class Pipeline:
    backend: Backend
    receiver: Role
    processor: Role
    writer: Role


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    backend = start_backend("mock")
    tmp = tmp_path_factory.mktemp("join-restart")
    env = role_env(tmp, backend.bootstrap, backend.clickhouse_url, INFERLINE_API_KEYS=f"{KEY}={PROJECT}")
    roles = [Role(name, env, tmp) for name in ("processor", "writer", "receiver")]
    started: list[Role] = []
    try:
        for r in roles:
            started.append(r.start())
        yield Pipeline(backend, roles[2], roles[0], roles[1])
    finally:
        for r in reversed(started):
            r.stop()
        backend.close()


def _post(receiver: Role, path: str, body: bytes) -> None:
    r = httpx.post(
        f"{receiver.http_url}{path}",
        content=body,
        headers={"content-type": "application/json", "authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def _send_logs(receiver: Role, trace_id: str, span_id: str) -> None:
    """OTel <=1.36 content events: the prompt and the choice as log records."""
    logs = [
        {
            "traceId": trace_id,
            "spanId": span_id,
            "eventName": "gen_ai.user.message",
            "attributes": {"gen_ai.system": "openai"},
            "body": {"content": PROMPT},
        },
        {
            "traceId": trace_id,
            "spanId": span_id,
            "eventName": "gen_ai.choice",
            "attributes": {"gen_ai.system": "openai"},
            "body": {"index": 0, "finish_reason": "stop", "message": {"content": ANSWER}},
        },
    ]
    _post(receiver, "/v1/logs", logs_json(logs))


def _send_span(receiver: Role, trace_id: str, span_id: str) -> None:
    """A chat span without content attributes (content capture goes to the log events)."""
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 3,
    }
    span = json_span(attributes, trace_id=trace_id, span_id=span_id, name="chat gpt-4o-mini")
    _post(receiver, "/v1/traces", traces_json([span]))


def _consume(bootstrap: str, topic: str, trace_id: str, count: int, timeout: float = 60) -> list[dict]:
    """The enriched records of one trace on `topic`, decoded."""
    return [r.row for r in consume_records(bootstrap, topic, of_trace(trace_id), count, timeout)]


def _restart_processor(p: Pipeline) -> None:
    assert p.processor.stop() == 0, p.processor.logs()[-3000:]
    p.processor.start()


def _stored(p: Pipeline, iid: str) -> dict:
    def row() -> dict | None:
        out = p.writer.sql(
            "SELECT version, prompt_messages, response_messages FROM llm_inferences FINAL "
            f"WHERE inference_id = '{iid}' FORMAT JSONEachRow",
            KEY,
        )
        return orjson.loads(out) if out else None

    assert wait_for(lambda: row() is not None, timeout=60)
    got = row()
    assert got is not None
    return got


def _has_content(record: dict) -> bool:
    prompt, response = record["prompt_messages"], record["response_messages"]
    if isinstance(prompt, str):  # ClickHouse stores them as JSON strings
        prompt, response = orjson.loads(prompt), orjson.loads(response)
    return any(PROMPT in str(m.get("content")) for m in prompt) and any(
        ANSWER in str(m.get("content")) for m in response
    )


def test_logs_before_span_survive_a_processor_restart(pipeline: Pipeline) -> None:
    p = pipeline
    trace_id, span_id = new_trace_id(), new_span_id()
    iid = inference_id(PROJECT, trace_id, span_id)
    _send_logs(p.receiver, trace_id, span_id)
    # The processor has processed them (their otel_logs rows are out); the content waits for the span.
    assert len(_consume(p.backend.bootstrap, LOGS, trace_id, 2)) == 2

    _restart_processor(p)
    _send_span(p.receiver, trace_id, span_id)

    records = [r for r in _consume(p.backend.bootstrap, INFERENCES, trace_id, 1) if r["inference_id"] == iid]
    assert records, "no inference for the span"
    final = max(records, key=lambda r: r["version"])
    assert _has_content(final), f"the content logs were lost in the restart: {final}"
    assert _has_content(_stored(p, iid))


def test_span_before_late_logs_survives_a_processor_restart(pipeline: Pipeline) -> None:
    p = pipeline
    trace_id, span_id = new_trace_id(), new_span_id()
    iid = inference_id(PROJECT, trace_id, span_id)
    _send_span(p.receiver, trace_id, span_id)
    [first] = _consume(p.backend.bootstrap, INFERENCES, trace_id, 1)
    assert first["inference_id"] == iid and first["version"] == 1
    assert not _has_content(first)

    _restart_processor(p)
    # The new processor replays the span (its row was remembered for late logs when the first one
    # stopped) and remembers it again.
    replayed = _consume(p.backend.bootstrap, INFERENCES, trace_id, 2)
    assert len(replayed) == 2, "the span was not replayed: its remembered row was lost in the restart"
    _send_logs(p.receiver, trace_id, span_id)

    records = _consume(p.backend.bootstrap, INFERENCES, trace_id, 3)
    assert len(records) == 3, "the late logs produced no updated row"
    updated = records[-1]
    assert updated["inference_id"] == iid and updated["version"] == 2
    assert _has_content(updated)
    assert wait_for(lambda: _stored(p, iid)["version"] == 2, timeout=60)
    assert _has_content(_stored(p, iid))
    # The replayed copy of version 1 reached the writer too; it was not stored again, so the
    # rollup (whose sums no merge can undo) counts each inference once.
    counted = (
        "SELECT (SELECT sum(calls) FROM llm_inferences_by_minute) = "
        "(SELECT uniqExact(inference_id) FROM llm_inferences)"
    )
    assert p.writer.sql(counted, KEY) == "1"
