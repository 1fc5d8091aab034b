"""Attribution from the trace (issue #15): user, session, tenant and tags set on an ancestor span are
inherited by the model calls under it (span > nearest ancestor > resource), whether the ancestor
arrives before, with or after the model span; a late ancestor rewrites the row as a new version."""

from __future__ import annotations

from typing import Any

import pytest

from inferline.core.records import Span
from inferline.processors.normalise import GenAINormaliser
from tests.genai_examples import PROJECT_ID, make_log, make_span

pytestmark = pytest.mark.unit

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
START = 1_755_684_000_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def span(span_id: str, parent: str, attributes: dict[str, Any], *, name: str = "span", **kw: Any) -> Span:
    ex = {
        "traceId": TRACE,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "startTimeUnixNano": START,
        "attributes": attributes,
        **kw,
    }
    return make_span(ex)


# The application's own request span (OTel HTTP server instrumentation plus the app's attributes),
# and an openai-v2 model call under it that names no user or session.
def request_span(**extra: Any) -> Span:
    attributes = {
        "http.request.method": "POST",
        "http.route": "/chat",
        "user.id": "u_42",
        "session.id": "sess_9",
        **extra,
    }
    return span("00f067aa0ba90001", "", attributes, name="POST /chat", kind="SERVER")


def model_span(parent: str = "00f067aa0ba90001", span_id: str = "00f067aa0ba90002", **extra: object) -> Span:
    attributes: dict[str, object] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 3,
        "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"Hi"}]}]',
        "gen_ai.output.messages": '[{"role":"assistant","parts":[{"type":"text","content":"Hello"}]}]',
        **extra,
    }
    return span(span_id, parent, attributes, name="chat gpt-4o-mini", kind="CLIENT")


def ids(row: dict[str, Any]) -> tuple[str, str, str]:
    return row["user_id"], row["session_id"], row["tenant_id"]


def test_ancestor_before_the_model_span_in_an_earlier_request() -> None:
    n = GenAINormaliser()
    assert n.normalise([request_span()], []) == []  # not a model call: no row
    [row] = n.normalise([model_span()], [])
    assert ids(row) == ("u_42", "sess_9", "") and row["version"] == 1


def test_ancestor_after_the_model_span_rewrites_the_row() -> None:
    n = GenAINormaliser()
    [first] = n.normalise([model_span()], [])
    assert ids(first) == ("", "", "") and first["version"] == 1
    [second] = n.normalise([request_span()], [])
    assert second["inference_id"] == first["inference_id"] and second["version"] == 2
    assert ids(second) == ("u_42", "sess_9", "")
    assert second["response_messages"] == first["response_messages"]  # the rest of the row as it was
    assert n.ancestry_waiting == 0
    assert n.normalise([request_span()], []) == []  # a replayed ancestor changes nothing


def test_ancestor_later_in_the_same_batch_gives_one_row() -> None:
    [row] = GenAINormaliser().normalise([model_span(), request_span()], [])
    assert ids(row) == ("u_42", "sess_9", "") and row["version"] == 1


def test_precedence_span_then_nearest_ancestor_then_resource() -> None:
    n = GenAINormaliser(tenant_keys=("tenant.id",))
    root = request_span(**{"user.id": "u_root", "tenant.id": "t_root"})
    chain = span(
        "00f067aa0ba90003",
        "00f067aa0ba90001",
        {"openinference.span.kind": "CHAIN", "user.id": "u_chain", "input.value": "hi"},
        name="RunnableSequence",
    )
    resource = {
        "service.name": "bot",
        "user.id": "u_resource",
        "session.id": "s_resource",
        "tenant.id": "t_res",
    }
    model = model_span(parent="00f067aa0ba90003", **{"session.id": "s_span"})
    model.resource = resource
    [row] = n.normalise([root, chain, model], [])
    # user: nearest ancestor (the chain) over the root and the resource; session: the span's own;
    # tenant: the root (an ancestor) over the resource
    assert ids(row) == ("u_chain", "s_span", "t_root")
    orphan = model_span(parent="", span_id="00f067aa0ba90009")
    orphan.resource = resource
    [alone] = n.normalise([orphan], [])
    assert ids(alone) == ("u_resource", "s_resource", "t_res")


def test_missing_intermediate_span_completes_the_chain_later() -> None:
    n = GenAINormaliser()
    assert n.normalise([request_span()], []) == []
    [first] = n.normalise([model_span(parent="00f067aa0ba90003")], [])  # its parent not seen yet
    assert ids(first) == ("", "", "")
    chain = span("00f067aa0ba90003", "00f067aa0ba90001", {"traceloop.span.kind": "workflow"}, name="agent")
    [second] = n.normalise([chain], [])
    assert ids(second) == ("u_42", "sess_9", "") and second["version"] == 2


def test_tags_and_labels_of_ancestors_under_the_spans_own() -> None:
    """OpenLLMetry association properties and OpenInference tags on the request span."""
    root = request_span(
        **{
            "traceloop.association.properties.tenant_id": "acme",
            "traceloop.association.properties.feature": "support",
            "traceloop.association.properties.plan": "free",
            "tag.tags": ["beta"],
        }
    )
    own: dict[str, Any] = {"traceloop.association.properties.plan": "pro", "tag.tags": ["sql"]}
    model = model_span(**own)
    n = GenAINormaliser()
    [first] = n.normalise([model], [])
    [row] = n.normalise([root], [])
    assert row["tenant_id"] == "acme"
    assert row["tags"] == {"tenant_id": "acme", "feature": "support", "plan": "pro"}
    assert row["labels"] == ["sql", "beta"]
    assert first["tags"] == {"plan": "pro"} and first["labels"] == ["sql"]


def test_span_with_its_own_ids_does_not_wait() -> None:
    n = GenAINormaliser(tenant_keys=("tenant.id",))
    model = model_span(**{"user.id": "u_own", "session.id": "s_own", "tenant.id": "t_own"})
    [row] = n.normalise([model], [])
    assert n.ancestry_waiting == 0
    assert n.normalise([request_span()], []) == []
    assert ids(row) == ("u_own", "s_own", "t_own")


def test_ancestor_after_the_window_changes_nothing() -> None:
    clock = Clock()
    n = GenAINormaliser(join_window_s=30, clock=clock)
    n.normalise([model_span()], [])
    clock.now += 31
    assert n.normalise([request_span()], []) == []
    assert n.ancestry_waiting == 0


def test_late_content_after_a_late_ancestor_keeps_both() -> None:
    """A row waiting for its log content and for its ancestor: each arrival is one more version."""
    bare = span(
        "00f067aa0ba90002",
        "00f067aa0ba90001",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "anthropic",
            "gen_ai.request.model": "claude-3-5-sonnet",
        },
        name="chat claude-3-5-sonnet",
    )
    n = GenAINormaliser()
    [v1] = n.normalise([bare], [])
    [v2] = n.normalise([request_span()], [])
    log = make_log(
        {"eventName": "gen_ai.user.message", "body": {"content": "Hi"}},
        trace_id=TRACE,
        span_id="00f067aa0ba90002",
        project_id=PROJECT_ID,
    )
    [v3] = n.normalise([], [log])
    assert [r["version"] for r in (v1, v2, v3)] == [1, 2, 3]
    assert ids(v3) == ("u_42", "sess_9", "")
    assert v3["prompt_messages"] == [{"role": "user", "content": "Hi"}]


def test_kept_spans_and_rows_hold_their_offsets_for_the_window() -> None:
    """Kafka: a restart replays what only lived in the ancestry (the processor commits no further)."""
    clock = Clock()
    n = GenAINormaliser(join_window_s=30, clock=clock)
    model = model_span()
    model.origin = ("inferline.raw.spans", 3, 120)
    n.normalise([model], [])
    assert n.held_offsets() == {("inferline.raw.spans", 3): 120} and n.ancestry_waiting == 1
    clock.now += 20
    parent = request_span()
    parent.origin = ("inferline.raw.spans", 3, 130)
    n.normalise([parent], [])
    assert n.ancestry_waiting == 0
    # the request span stays a link for its window (for calls still to come under it); the model
    # call, complete now, holds nothing
    assert n.held_offsets() == {("inferline.raw.spans", 3): 130}
    assert n.forget([("inferline.raw.spans", 3)]) == 1  # revoked: the next owner replays it
    assert n.held_offsets() == {}
    n.normalise([parent], [])
    clock.now += 31
    n.expire()
    assert n.held_offsets() == {} and n.ancestry_links == 0


def test_bounded_waiting_rows() -> None:
    n = GenAINormaliser(max_pending=5)
    for i in range(20):
        n.normalise([model_span(parent=f"{i:016x}", span_id=f"{i + 100:016x}")], [])
    assert n.ancestry_waiting <= 5
