"""Known inferences sent through OTLP for the API tests, and small calls against the API."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from inferline.processors.normalise import inference_id
from tests.conftest import Service
from tests.otlp_helpers import json_span, traces_json

MINUTE_NS = 60_000_000_000
QUOTED_PROMPT = 'He said "quote" and a back\\slash, Grüße'
LONG_PROMPT = "Long question " + "x" * 300
CANARY = "zebra-canary-8841"  # in one prompt: must never reach a log line


@dataclass(frozen=True)
class Sent:
    """One inference as sent, with what the API should report for it."""

    index: int
    project: str
    inference_id: str
    start_ns: int
    provider: str
    model: str
    user: str
    session: str
    tenant: str
    feature: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    ttft_ms: float | None
    success: bool
    prompt: str
    response: str
    system: str

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


_MODELS = [
    ("anthropic", "claude-3-5-sonnet-20241022"),
    ("openai", "gpt-4o-mini"),
    ("openai", "house-llm-1"),  # not in any price table: cost NULL
]
_USERS = ["u_alice", "u_bob", "u_carol", "u_dave"]


def _prompt(i: int) -> str:
    if i == 5:
        return QUOTED_PROMPT
    if i == 7:
        return LONG_PROMPT
    if i == 10:
        return f"Remember {CANARY} for topic-10"
    return f"Question {i}: tell me about topic-{i} please"


def dataset(project: str, base_ns: int, count: int = 12) -> list[Sent]:
    out = []
    for i in range(count):
        provider, model = _MODELS[i % 3]
        out.append(
            Sent(
                index=i,
                project=project,
                inference_id="",
                start_ns=base_ns + i * MINUTE_NS,
                provider=provider,
                model=model,
                user=_USERS[i % 4],
                session=f"sess_{i // 3}",
                tenant="acme" if i < 6 else "globex",
                feature="chat" if i % 2 == 0 else "summarize",
                input_tokens=100 + (i * 7 % 12) * 37,
                output_tokens=10 + (i * 11 % 12) * 3,
                latency_ms=100.0 * ((i * 5) % 12 + 1),
                ttft_ms=40.0 + i if i % 2 == 0 else None,
                success=i not in (4, 9),
                prompt=_prompt(i),
                response=f"Answer {i}: topic-{i} is interesting.",
                system="You are terse." if i % 3 == 2 else "",
            )
        )
    return out


def _span(s: Sent) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": s.provider,
        "gen_ai.request.model": s.model,
        "gen_ai.usage.input_tokens": s.input_tokens,
        "gen_ai.usage.output_tokens": s.output_tokens,
        "user.id": s.user,
        "gen_ai.conversation.id": s.session,
        "tenant.id": s.tenant,
        "traceloop.association.properties.feature": s.feature,
        "server.address": f"api.{s.provider}.com",
        "gen_ai.input.messages": orjson.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": s.prompt}]}]
        ).decode(),
        "gen_ai.output.messages": orjson.dumps(
            [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": s.response}],
                    "finish_reason": "stop",
                }
            ]
        ).decode(),
    }
    if s.system:
        attributes["gen_ai.system_instructions"] = orjson.dumps(
            [{"type": "text", "content": s.system}]
        ).decode()
    if s.ttft_ms is not None:
        attributes["gen_ai.response.time_to_first_chunk"] = s.ttft_ms / 1000
    if not s.success:
        attributes["error.type"] = "RateLimitError"
    return json_span(
        attributes,
        name=f"chat {s.model}",
        start_ns=s.start_ns,
        end_ns=s.start_ns + int(s.latency_ms * 1_000_000),
        status_code=0 if s.success else 2,
    )


def send(service: Service, key: str, sent: list[Sent]) -> list[Sent]:
    """Send the inferences through OTLP/HTTP; returns them with their inference ids."""
    spans = [_span(s) for s in sent]
    body = traces_json(spans, resource={"service.name": "api-test-bot", "deployment.environment": "test"})
    r = httpx.post(
        f"{service.http_url}/v1/traces",
        content=body,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return [
        Sent(**{**s.__dict__, "inference_id": inference_id(s.project, span["traceId"], span["spanId"])})
        for s, span in zip(sent, spans, strict=True)
    ]


def seed(service: Service) -> tuple[list[Sent], list[Sent], str]:
    """Twelve inferences in the default project and three in `other`, all within the last hours.
    Returns (mine, theirs, from_date)."""
    base = time.time_ns() - 3 * 3600 * 1_000_000_000
    mine = send(service, service.key, dataset("default", base))
    theirs = send(service, service.extra_keys["other"], dataset("other", base, 3))
    return mine, theirs, iso(base - MINUTE_NS)  # embedded: stored once acknowledged


def iso(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest // 1000:06d}Z"


def api(service: Service, method: str, path: str, key: str | None, **kwargs: Any) -> httpx.Response:
    service.settle()
    headers = {"authorization": f"Bearer {key}"} if key else {}
    headers.update(kwargs.pop("headers", {}))
    return httpx.request(method, f"{service.api_url}{path}", headers=headers, timeout=30, **kwargs)


def list_page(service: Service, key: str, body: dict[str, Any]) -> httpx.Response:
    return api(service, "POST", "/api/v1/metrics/inferences/list", key, json=body)


def list_ids(service: Service, key: str, body: dict[str, Any]) -> list[str] | None:
    r = list_page(service, key, {"limit": 1000, **body})
    assert r.status_code == 200, r.text
    return [item["inference_id"] for item in r.json()["items"]]


def audit_lines(service: Service) -> list[dict[str, Any]]:
    lines = []
    for line in service.logs().splitlines():
        if '"audit"' in line:
            record = orjson.loads(line)
            if record.get("event") == "audit":
                lines.append(record)
    return lines
