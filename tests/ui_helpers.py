"""The browser side of the dashboard tests: Debian's Chromium through Playwright, a watch over
what a page does (dialogs, console errors, requests), sign-in, and data sent with the real SDK."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from playwright.sync_api import ConsoleMessage, Dialog, Page, Request
from playwright.sync_api import Error as PlaywrightError

from inferline.processors.normalise import inference_id
from tests.conftest import ROOT, Service
from tests.otlp_helpers import GENAI_ATTRIBUTES, sdk_spans

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = ROOT / "tests" / "artifacts" / "screenshots"


@dataclass
class PageWatch:
    """Everything a page did that hostile content could cause: dialogs (each dismissed), console
    errors (CSP violations are logged there), uncaught script errors, and requests that left for
    another origin."""

    origin: str
    dialogs: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> Page:
        page.on("dialog", self._dialog)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("request", self._request)
        return page

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def _request(self, request: Request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "blob", "about"):
            return
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.foreign_requests.append(request.url)

    def assert_inert(self) -> None:
        assert self.dialogs == [], f"a dialog opened: {self.dialogs}"
        assert self.page_errors == [], f"script errors: {self.page_errors}"
        assert self.foreign_requests == [], f"requests left for other origins: {self.foreign_requests}"
        csp = [e for e in self.console_errors if "Content Security Policy" in e]
        assert csp == [], f"CSP violations: {csp}"


def sign_in(page: Page, service: Service, key: str, landing: str = "**/ui/inferences") -> None:
    page.goto(f"{service.api_url}/")
    page.fill("#key", key)
    page.click("form[action='/ui/signin'] button[type=submit]")
    page.wait_for_url(landing)


def row_ids(page: Page) -> list[str]:
    return page.locator("tr[data-inference-id]").evaluate_all("rows => rows.map(r => r.dataset.inferenceId)")


def wait_for_rows(page: Page, expected: list[str], timeout_s: float = 10) -> None:
    """Until the table shows exactly these rows in this order (htmx swaps them in after the URL
    changed, and going back reloads the page)."""
    deadline = time.monotonic() + timeout_s
    shown: list[str] = []
    while time.monotonic() < deadline:
        try:
            shown = row_ids(page)
        except PlaywrightError:  # the page was navigating
            shown = []
        if shown == expected:
            return
        page.wait_for_timeout(50)
    assert shown == expected


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def export_spans(service: Service, key: str, spans: list[Any]) -> list[str]:
    """Sends spans with the SDK's OTLP/HTTP exporter; returns their inference ids."""
    exporter = HttpSpanExporter(
        endpoint=f"{service.http_url}/v1/traces", headers={"authorization": f"Bearer {key}"}, timeout=30
    )
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    return [inference_id("default", f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}") for s in spans]


# Attacker-controlled text, as prompts, responses, tool arguments and attributes carry it. Every
# entry would run script, open a dialog or load something from another origin if rendered as HTML.
XSS_CORPUS = [
    "<script>alert('xss-script')</script>",
    "<img src=x onerror=alert('xss-img')>",
    "[click me](javascript:alert('xss-md')) <a href=\"javascript:alert('xss-a')\">link</a>",
    "</textarea></pre></details><script>alert('xss-breakout')</script><svg onload=alert('xss-svg')>",
    '"><iframe src="https://evil.example/frame"></iframe><img src="https://evil.example/pixel.png">',
    "**bold** <style>body{display:none}</style><link rel=stylesheet href=https://evil.example/x.css>",
    '<div hx-get="https://evil.example/h" hx-trigger="load">htmx</div> {{ 7*7 }} ${alert(1)}',
]
XSS_FEATURE = "xss"  # the corpus's spans carry the tag feature=xss
# Their session id: hostile too, with the characters an address treats apart (/ ? #).
XSS_SESSION = "xss/<script>alert('xss-session')</script>?q=1#frag"


def _parts_message(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": text}]}


def xss_spans() -> list[Any]:
    """One span per corpus entry: the entry as system prompt, question, answer, tool call
    arguments, tool result, user id and an attribute."""
    spans = []
    for i, text in enumerate(XSS_CORPUS):
        prompt = [
            _parts_message("system", text),
            _parts_message("user", f"xss-{i} {text}"),
            {
                "role": "assistant",
                "parts": [
                    {"type": "tool_call", "id": f"call_{i}", "name": "lookup", "arguments": {"q": text}}
                ],
            },
            {"role": "tool", "parts": [{"type": "tool_call_response", "id": f"call_{i}", "response": text}]},
        ]
        attributes = {
            **GENAI_ATTRIBUTES,
            "gen_ai.input.messages": json.dumps(prompt),
            "gen_ai.output.messages": json.dumps([_parts_message("assistant", f"answer {text}")]),
            "user.id": f"u_mallory{text[:40]}",
            "gen_ai.conversation.id": XSS_SESSION,
            "traceloop.association.properties.feature": XSS_FEATURE,
            "app.note": text,
        }
        spans += sdk_spans(attributes, service_name="xss-bot")
    return spans


MS = 1_000_000


def agent_trace() -> list[ReadableSpan]:
    """An agent's trace made by the SDK: agent → model call → tool → model call, a minute ago.
    Spans in start order; the model calls are the second and the fourth."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "agent-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("agent-test")
    t0 = time.time_ns() - 60_000 * MS
    agent = tracer.start_span("invoke_agent planner", start_time=t0, kind=SpanKind.INTERNAL)
    inside = otel_trace.set_span_in_context(agent)
    base = {k: v for k, v in GENAI_ATTRIBUTES.items() if k != "gen_ai.usage.cache_read.input_tokens"}
    base["user.id"] = "u_agent"

    def call(tokens_in: int, tokens_out: int) -> dict[str, Any]:
        return {**base, "gen_ai.usage.input_tokens": tokens_in, "gen_ai.usage.output_tokens": tokens_out}

    steps = [
        ("chat gpt-4o-mini", 100, 1100, call(100, 20)),
        ("tool lookup_order", 1200, 1500, {"tool.name": "lookup_order"}),
        ("chat gpt-4o-mini", 1600, 2900, call(150, 40)),
    ]
    for name, start_ms, end_ms, attributes in steps:
        kind = SpanKind.CLIENT if "gen_ai.operation.name" in attributes else SpanKind.INTERNAL
        span = tracer.start_span(
            name, context=inside, kind=kind, attributes=attributes, start_time=t0 + start_ms * MS
        )
        span.end(end_time=t0 + end_ms * MS)
    agent.end(end_time=t0 + 3000 * MS)
    provider.shutdown()
    return sorted(memory.get_finished_spans(), key=lambda s: s.start_time or 0)
