"""The inference detail page opens for every call: with or without a user and a session (it
answered 500 for any call missing one of them)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from inferline.ui.session_page import CALLS_PER_PAGE
from tests.conftest import Service, make_service, wait_for
from tests.otlp_helpers import GENAI_ATTRIBUTES, sdk_spans

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = make_service(tmp_path_factory.mktemp("ui-detail"))
    svc.start()
    yield svc
    assert svc.stop() == 0


def _signed_in(service: Service) -> httpx.Client:
    client = httpx.Client(base_url=service.api_url, follow_redirects=False, timeout=30)
    form = client.get("/ui/signin").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf
    assert client.post("/ui/signin", data={"csrf": csrf.group(1), "key": service.key}).status_code == 303
    return client


def _stored_call(service: Service, user: str = "", session: str = "", calls: int = 1, model: str = "") -> str:
    """Sends `calls` model calls of this user and session (none where empty); the id of one."""
    attributes = {k: v for k, v in GENAI_ATTRIBUTES.items() if k not in ("user.id", "gen_ai.conversation.id")}
    if model:
        attributes["gen_ai.request.model"] = attributes["gen_ai.response.model"] = model
    if user:
        attributes["user.id"] = user
    if session:
        attributes["session.id"] = session
    spans = [span for _ in range(calls) for span in sdk_spans(attributes)]
    exporter = OTLPSpanExporter(
        endpoint=f"{service.http_url}/v1/traces", headers={"authorization": f"Bearer {service.key}"}
    )
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    trace_ids = ", ".join(f"'{s.context.trace_id:032x}'" for s in spans)
    inference_id = wait_for(
        lambda: service.sql(
            f"SELECT any(inference_id) FROM llm_inferences WHERE trace_id IN ({trace_ids}) "
            f"HAVING count() = {calls}"
        ).strip()
    )
    assert inference_id
    return inference_id


@pytest.mark.parametrize(
    ("user", "session"),
    [("", ""), ("u-1", ""), ("", "s-1"), ("u-2", "s-2")],
    ids=["neither", "user", "session", "both"],
)
def test_the_detail_page_opens_with_or_without_a_user_and_a_session(
    service: Service, user: str, session: str
) -> None:
    inference_id = _stored_call(service, user, session)
    client = _signed_in(service)
    try:
        page = client.get(f"/ui/inferences/{inference_id}")
    finally:
        client.close()
    assert page.status_code == 200, page.text[:300]
    assert "gpt-4o-mini" in page.text
    assert ('data-link="user"' in page.text) == bool(user)
    assert ('data-link="session"' in page.text) == bool(session)
    assert "content-security-policy" in page.headers


@pytest.mark.parametrize("session", [".", "..", "a/../b"])
def test_a_session_named_like_a_dot_segment_links_to_its_own_page(service: Service, session: str) -> None:
    """A session id of ".." linked to /ui/sessions/.., which a browser resolves to /ui/ (the
    inference list): the link must open that session, with its pager."""
    inference_id = _stored_call(service, "u-dots", session, calls=CALLS_PER_PAGE + 1)
    client = _signed_in(service)
    try:
        detail = client.get(f"/ui/inferences/{inference_id}").text
        link = re.search(r'<a href="([^"]+)" data-link="session"', detail)
        assert link, detail[:500]
        address = httpx.URL(service.api_url).join(link.group(1).replace("&amp;", "&"))
        assert address.path.startswith("/ui/sessions")  # what a browser opens: not the parent
        page = client.get(str(address))
        assert page.status_code == 200, page.text[:300]
        shown = r'data-testid="session-id"[^>]*>' + re.escape(session) + "<"
        assert re.search(shown, page.text)
        # Its pager: the next page is the same session's, and links back to the first.
        later = re.search(r'<a rel="next" href="([^"]+)"', page.text)
        assert later, "no pager"
        second = client.get(str(address.join(later.group(1).replace("&amp;", "&"))))
        assert second.status_code == 200 and re.search(shown, second.text)
        assert 'rel="prev"' in second.text and "page 2 of 2" in second.text
    finally:
        client.close()


@pytest.mark.parametrize("length", [300, 2000])
def test_long_ids_link_to_pages_that_open_or_show_as_text(service: Service, length: int) -> None:
    """Ids are the sender's text, stored whole. One of 300 characters linked to a list filtered by
    it that answered 422 (the filter took 256): it opens now. One longer than any filter takes
    is shown without a link, never with one that fails."""
    session, user, model = ("s" * (length - 1) + "1", "u" * (length - 1) + "2", "m" * (length - 1) + "3")
    inference_id = _stored_call(service, user, session, model=model)
    client = _signed_in(service)
    try:
        # The list and the analytics page link each model to the list narrowed to it.
        for listing in ("/ui/inferences?range=24h&size=100", "/ui/analytics?range=24h"):
            text = client.get(listing).text
            assert model in text
            narrowed = [h.replace("&amp;", "&") for h in re.findall(r'href="(/ui/inferences\?[^"]*)"', text)]
            assert any(model in h for h in narrowed) == (length <= 1024), listing
            for href in narrowed:
                answer = client.get(href)
                assert answer.status_code == 200, (listing, href[:80], answer.text[:300])
        detail = client.get(f"/ui/inferences/{inference_id}").text
        hrefs = [
            h.replace("&amp;", "&")
            for h in re.findall(r'<a href="([^"]+)" data-link="(?:session|user)"', detail)
        ]
        if length > 1024:
            assert hrefs == [] and session in detail and user in detail  # the text, no link
            # The API's filters take it back whole (a breakdown returns it as a group's key).
            listed = httpx.post(
                f"{service.api_url}/api/v1/metrics/inferences/list",
                json={"from_date": "2026-01-01T00:00:00Z", "user": user, "session": session, "model": model},
                headers={"Authorization": f"Bearer {service.key}"},
            )
            assert listed.status_code == 200, listed.text[:300]
            assert [i["inference_id"] for i in listed.json()["items"]] == [inference_id]
            return
        assert len(hrefs) == 2
        opened = {}
        for href in hrefs:
            page = client.get(href)
            assert page.status_code == 200, (href[:80], page.text[:300])
            opened[href.split("?")[0].split("/")[2]] = page.text
            for link in re.findall(r'href="(/ui/(?:inferences|users/sessions|sessions)[^"]*)"', page.text):
                followed = client.get(link.replace("&amp;", "&"))
                assert followed.status_code == 200, (link[:80], followed.text[:300])
        assert set(opened) == {"sessions", "users"}
    finally:
        client.close()


@pytest.mark.parametrize("session", [" pad ", "line\n", "a\nb", " "])
def test_sessions_with_spaces_or_line_feeds_link_to_their_own_calls(service: Service, session: str) -> None:
    """A session " pad " linked to a list of session "pad"'s calls (filters were stripped), one of
    " " to every call, and one with a line feed to a 404 (the router's paths stop at it)."""
    if session.strip() not in ("", session):
        _stored_call(service, "u-twin", session.strip())  # what a stripped filter would find instead
    inference_id = _stored_call(service, "u-ws", session)
    client = _signed_in(service)
    try:
        detail = client.get(f"/ui/inferences/{inference_id}").text
        link = re.search(r'<a href="([^"]+)" data-link="session"', detail)
        assert link, detail[:500]
        page = client.get(link.group(1).replace("&amp;", "&"))
        assert page.status_code == 200, page.text[:300]
        shown = re.search(r'data-testid="session-id"[^>]*>([^<]*)<', page.text)
        assert shown and html.unescape(shown.group(1)) == session
        listed = re.search(r'<a href="([^"]+)" data-link="list"', page.text)
        assert listed
        calls = client.get(listed.group(1).replace("&amp;", "&")).text
        ids = set(re.findall(r'href="/ui/inferences/([0-9a-f-]{36})"', calls))
        assert ids == {inference_id}  # this session's one call: not its twin's, not everyone's
    finally:
        client.close()


def test_the_group_of_calls_without_a_value_can_be_asked_for_by_the_api(service: Service) -> None:
    """A breakdown by user, session, model or feature shows the calls without one as the group
    "": that key, as a filter, gives exactly that group (it answered 422, or 0 for the feature)."""
    attributes = {
        k: v
        for k, v in GENAI_ATTRIBUTES.items()
        if k not in ("user.id", "gen_ai.conversation.id", "gen_ai.request.model", "gen_ai.response.model")
    }
    [span] = sdk_spans(attributes)
    exporter = OTLPSpanExporter(
        endpoint=f"{service.http_url}/v1/traces", headers={"authorization": f"Bearer {service.key}"}
    )
    assert exporter.export([span]) == SpanExportResult.SUCCESS
    assert wait_for(
        lambda: (
            service.sql(
                f"SELECT count() FROM llm_inferences WHERE trace_id = '{span.context.trace_id:032x}'"
            ).strip()
            == "1"
        )
    )
    api, auth = f"{service.api_url}/api/v1/metrics", {"Authorization": f"Bearer {service.key}"}
    since = {"from_date": "2026-01-01T00:00:00Z"}
    for dimension, filters in (
        ("user", {"user": ""}),
        ("session", {"session": ""}),
        ("model", {"model": ""}),
        ("feature", {"tags": {"feature": ""}}),
    ):
        for source in ("auto", "raw"):
            groups = httpx.post(
                f"{api}/analytics/breakdown",
                json={**since, "group_by": dimension, "source": source},
                headers=auth,
            ).json()["groups"]
            [empty] = [g for g in groups if g["key"] == ""]
            listed = httpx.post(f"{api}/inferences/list", json={**since, **filters, "limit": 1}, headers=auth)
            assert listed.status_code == 200, (dimension, listed.text[:300])
            overview = httpx.post(
                f"{api}/analytics/overview", json={**since, **filters, "source": source}, headers=auth
            )
            assert overview.status_code == 200, (dimension, overview.text[:300])
            assert listed.json()["total_count"] == empty["requests"] == overview.json()["requests"], (
                dimension,
                source,
            )
