"""The dashboard's parts in-process: sessions, the URL's view of the Inferences page, the way in
from `/`, CSRF checks and escaping. (The whole dashboard in a browser: test_ui_browser.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from inferline.api.app import api_app
from inferline.api.inference_models import ListRequest
from inferline.api.metrics_access import MetricsAccess
from inferline.api.sql import ReadOnlySql
from inferline.ui import links
from inferline.ui.app import add_dashboard
from inferline.ui.listing import list_request, parse_view
from inferline.ui.security import CONTENT_SECURITY_POLICY, BrowserEntrance, same_origin, tokens_match
from inferline.ui.sessions import FLASH_S, IDLE_S, LIFETIME_S, SessionStore
from inferline.ui.templating import duration, percent_class, templates

pytestmark = pytest.mark.unit
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


class Keys:
    def __init__(self) -> None:
        self.valid = {"il_good": "alpha", "il_other": "beta"}

    def project_for(self, key: str | None) -> str | None:
        return self.valid.get(key or "")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_valid_key_gets_a_session_of_its_project_and_a_wrong_one_none() -> None:
    store = SessionStore(Keys())
    assert store.sign_in("il_wrong") is None and len(store) == 0
    session = store.sign_in("il_good")
    assert session is not None and session.project_id == "alpha"
    assert store.get(session.session_id) is session
    assert session.session_id != session.csrf_token and "il_good" not in session.session_id
    assert "il_good" not in repr(session) and session.session_id not in repr(session)
    assert session.caller.project_id == "alpha" and session.caller.key_id != "il_good"
    another = store.sign_in("il_good")
    assert another is not None and another.session_id != session.session_id


def test_sessions_end_when_idle_when_old_on_sign_out_and_when_the_key_is_revoked() -> None:
    keys, clock = Keys(), Clock()
    store = SessionStore(keys, clock=clock)
    idle = store.sign_in("il_good")
    assert idle is not None
    clock.now += IDLE_S + 1
    assert store.get(idle.session_id) is None

    used = store.sign_in("il_good")
    assert used is not None
    start = clock.now
    while clock.now - start + IDLE_S / 2 <= LIFETIME_S:  # kept busy: lives on …
        clock.now += IDLE_S / 2
        assert store.get(used.session_id) is not None
    clock.now = start + LIFETIME_S + 1  # … until its lifetime is over
    assert store.get(used.session_id) is None

    out = store.sign_in("il_other")
    assert out is not None
    store.sign_out(out.session_id)
    assert store.get(out.session_id) is None

    revoked = store.sign_in("il_good")
    assert revoked is not None
    del keys.valid["il_good"]
    assert store.get(revoked.session_id) is None
    assert store.get(None) is None and store.get("") is None


def test_the_url_holds_the_whole_view_and_comes_back_unchanged() -> None:
    query = (
        "range=30d&status=error&model=gpt-4o&provider=openai&user=u+1&session=s&tenant=t&q=hello+world"
        "&min_tokens=10&max_tokens=20&max_latency=500&tag=feature%3Dchat&tag=team%3Dx&sort=cost&order=asc"
        "&page=3&size=50"
    )
    view = parse_view(parse_qsl(query))
    assert view.errors == ()
    assert parse_view(parse_qsl(view.query())) == view
    request = list_request(view, NOW)
    assert isinstance(request, ListRequest)
    assert request.model_dump(exclude_none=True) == {
        "from_date": NOW - timedelta(days=30),
        "is_success": False,
        "model": "gpt-4o",
        "provider": "openai",
        "user": "u 1",
        "session": "s",
        "tenant": "t",
        "search": "hello world",
        "min_tokens": 10,
        "max_tokens": 20,
        "max_latency_ms": 500.0,
        "tags": {"feature": "chat", "team": "x"},
        "sort_by": "cost",
        "sort_order": "asc",
        "offset": 100,
        "limit": 50,
    }
    # A column header flips the order of its own column and starts other columns descending.
    assert "sort=cost" in view.sort_query("cost") and "order=" not in view.sort_query("cost")  # desc
    assert "sort=latency" in view.sort_query("latency") and "order=asc" not in view.sort_query("latency")
    assert "page=" not in view.sort_query("latency")  # a new order starts at page 1
    assert "format=csv" in view.export_query("csv") and "page=" not in view.export_query("csv")


def test_ids_and_names_are_filtered_exactly_as_the_links_carry_them() -> None:
    """A user " pad " is not the user "pad", and a user " " is a user, not "no filter": the
    pages link to lists narrowed to the stored value, whole (they were stripped: another
    value's rows, or every row). Only an empty value is no filter."""
    view = parse_view(parse_qsl("range=24h&user=+pad+&session=a%C2%85&tenant=+&model=&tag=feature%3D+lead"))
    request = list_request(view, NOW)
    assert isinstance(request, ListRequest)
    assert (request.user, request.session, request.tenant, request.model) == (" pad ", "a\x85", " ", None)
    assert request.tags == {"feature": " lead"}
    assert parse_view(parse_qsl(view.query())) == view


def test_values_with_line_feeds_travel_whole_in_the_form() -> None:
    """A text box drops line feeds and a submitted form makes them CR LF: the view puts such
    values in its `whole` field, and the form's submission (what Chromium sends) reads back the
    same filters."""
    view = parse_view(parse_qsl("session=a%0Ab&user=u&tag=note%3Dx%0Ay", keep_blank_values=True))
    assert view.kept_whole == '{"session":"a\\nb","tag":["note=x\\ny"]}'
    submitted = [
        ("range", "24h"),
        ("user", "u"),
        ("whole", view.kept_whole),
    ]  # the boxes with a \n are read-only
    again = parse_view(submitted)
    assert again.text == {"user": "u", "session": "a\nb"} and again.tags == ("note=x\ny",)
    assert parse_view([("whole", "not json")]).text == {} and parse_view([("whole", "[1]")]).tags == ()


def test_defaults_stay_out_of_the_url_and_bad_values_are_named() -> None:
    assert parse_view([]).query() == ""
    bad = parse_view([("size", "7"), ("sort", "model"), ("range", "forever"), ("status", "meh")])
    assert len(bad.errors) == 4 and bad.size == 25 and bad.sort == "timestamp"
    assert list_request(parse_view([("min_tokens", "9"), ("max_tokens", "3")]), NOW) == [
        "max tokens: Value error, max_tokens must not be below min_tokens"
    ]
    assert list_request(parse_view([("tag", "no-equals-sign")]), NOW) == [
        "tag filters are key=value: no-equals-sign"
    ]
    explicit = list_request(parse_view([("from", "2026-04-01T10:00:00"), ("range", "1h")]), NOW)
    assert isinstance(explicit, ListRequest) and explicit.from_date == datetime(2026, 4, 1, 10, tzinfo=UTC)


def _sql_app() -> TestClient:
    async def sql(request: Request) -> PlainTextResponse:
        return PlainTextResponse("sql:" + request.query_params.get("query", ""))

    app = Starlette(routes=[Route("/", sql, methods=["GET", "POST"])])
    return TestClient(BrowserEntrance(app), follow_redirects=False)


def test_only_a_browser_asking_for_html_at_root_is_sent_to_the_dashboard() -> None:
    client = _sql_app()
    browser = client.get("/", headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert (browser.status_code, browser.headers["location"]) == (303, "/ui/")
    assert client.get("/", headers={"accept": "*/*"}).text == "sql:"
    assert client.get("/?query=SELECT+1", headers={"accept": "text/html"}).text == "sql:SELECT 1"
    assert client.get("/?query=", headers={"accept": "text/html"}).text == "sql:"
    assert client.post("/", headers={"accept": "text/html"}).text == "sql:"


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.encode(), v.encode()) for k, v in {"host": "dash:8080", **headers}.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw, "query_string": b""})


def test_form_posts_from_another_site_are_told_apart() -> None:
    assert same_origin(_request({"sec-fetch-site": "same-origin", "origin": "null"}))
    assert not same_origin(_request({"sec-fetch-site": "cross-site"}))
    assert not same_origin(_request({"sec-fetch-site": "same-site"}))
    assert same_origin(_request({"origin": "http://dash:8080"}))
    assert not same_origin(_request({"origin": "https://evil.example"}))
    assert same_origin(_request({}))  # no browser hints: the CSRF token decides
    assert tokens_match("abc", "abc") and not tokens_match("abc", "abd")
    assert not tokens_match(None, "abc") and not tokens_match("", "") and not tokens_match("x", "")


def test_templates_escape_data_and_bars_use_classes() -> None:
    env = templates().env
    hostile = "<script>alert(1)</script>\"'&"
    html = env.from_string("<p title='{{ v }}'>{{ v }}</p>").render(v=hostile)
    assert "<script>" not in html and "&lt;script&gt;" in html and "&#39;" in html
    assert env.get_template("_messages.html").render(messages=[]).count("<li") == 1
    assert [percent_class(f) for f in (-1, 0, 0.374, 1, 3)] == ["w-0", "w-0", "w-37", "w-100", "w-100"]


def test_add_dashboard_serves_ui_beside_the_unchanged_sql_interface() -> None:
    """The wiring both API-serving roles use (embedded and the distributed writer)."""
    app = add_dashboard(api_app(Keys(), ReadOnlySql("chdb://", "default"), lambda: True, MetricsAccess.of()))
    client = TestClient(app, follow_redirects=False)
    assert client.get("/", headers={"accept": "text/html"}).headers["location"] == "/ui/"
    assert client.get("/", headers={"accept": "*/*"}).status_code == 401  # ClickHouse's answer
    page = client.get("/ui/signin")
    assert page.status_code == 200 and page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert page.headers["cache-control"] == "no-store"  # a page holds project data
    # The dashboard sets its own policy (not the API's `default-src 'none'`), and its static files
    # stay cacheable; a JSON answer of the API beside it is not.
    static = client.get("/ui/static/app.css")
    assert static.status_code == 200 and static.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "no-store" not in static.headers.get("cache-control", "")
    token = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    wrong = client.post("/ui/signin", data={"csrf": token, "key": "il_wrong"})
    assert wrong.status_code == 401 and "inferline_session" not in wrong.headers.get("set-cookie", "")
    no_token = client.post("/ui/signin", data={"key": "il_good"})
    assert no_token.status_code == 403
    token = client.get("/ui/signin").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    signed_in = client.post("/ui/signin", data={"csrf": token, "key": "il_good"})
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/ui/inferences"
    cookie = signed_in.headers["set-cookie"]
    assert (
        "HttpOnly" in cookie
        and "SameSite=strict" in cookie
        and "Path=/" in cookie
        and "il_good" not in cookie
    )
    assert client.get("/ui/analytics?range=forever").status_code == 400  # signed in: the page validates


def test_the_admin_key_gets_an_admin_session_that_ends_when_the_admin_key_changes() -> None:
    admin_keys = {"admin-secret"}
    store = SessionStore(Keys(), is_admin=lambda key: key in admin_keys)
    session = store.sign_in("admin-secret")
    assert session is not None and session.admin and session.project_id == ""
    project = store.sign_in("il_good")
    assert project is not None and not project.admin
    admin_keys.clear()  # INFERLINE_ADMIN_KEY changed
    assert store.get(session.session_id) is None and store.sign_in("admin-secret") is None
    assert store.get(project.session_id) is project


def test_a_flash_is_read_once_by_its_own_session_and_expires() -> None:
    clock = Clock()
    store = SessionStore(Keys(), clock=clock)
    mine, theirs = store.sign_in("il_good"), store.sign_in("il_good")
    assert mine is not None and theirs is not None
    store.leave_flash(mine, "the new key")
    assert store.take_flash(theirs) is None  # another browser of the same key: nothing
    assert store.take_flash(mine) == "the new key"
    assert store.take_flash(mine) is None  # a reload: gone
    store.leave_flash(mine, "left unread")
    clock.now += FLASH_S + 1
    assert store.take_flash(mine) is None
    assert "left unread" not in repr(mine)


def test_links_quote_ids_so_they_stay_whole() -> None:
    assert links.session_page("a/b?c#d e") == "/ui/sessions/a%2Fb%3Fc%23d%20e"
    assert links.session_page("s 1", page=2) == "/ui/sessions/s%201?page=2"
    # A browser resolves a "." or ".." segment, encoded or not: those ids travel as a parameter.
    assert links.session_page("..") == "/ui/sessions?id=.."
    assert links.session_page(".", page=3) == "/ui/sessions?id=.&page=3"
    assert links.session_page("a\nb") == "/ui/sessions?id=a%0Ab"  # the router's paths stop at \n
    assert not links.filterable("")  # "(unknown)": narrowing to "" would be no filter at all
    # Longer than any filter takes: no link rather than one that answers 422.
    assert links.inferences("24h", model="m" * 1024).endswith("m" * 1024)
    assert links.inferences("24h", user="u", model="m" * 1025) == ""
    assert links.session_page("s" * 1025) == links.user_page("u" * 1025) == ""
    # A tag is "key=value": the value is held to the limit on its own.
    assert links.inferences("all", tag="feature=" + "f" * 1024).endswith("f" * 1024)
    assert links.inferences("all", tag="feature=" + "f" * 1025) == ""
    assert links.user_page("u&x=1", "7d") == "/ui/users/sessions?user=u%26x%3D1&range=7d"
    assert links.inferences("24h", tag="feature=chat") == "/ui/inferences?range=24h&tag=feature%3Dchat"


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (None, "—"),
        (8.25, "8.2 ms"),
        (850, "850 ms"),
        (12_400, "12.4 s"),
        (185_000, "3 min 5 s"),
        (7_440_000, "2 h 4 min"),
    ],
)
def test_durations_read_in_the_largest_fitting_unit(ms: float | None, text: str) -> None:
    assert duration(ms) == text


def test_the_waterfall_marks_tool_calls_and_retrievals_escaped() -> None:
    from types import SimpleNamespace

    from inferline.api.trace_steps import Document, Retrieval, ToolCall
    from inferline.api.traces import Trace, TraceSpan
    from inferline.ui.trace_page import bars

    hostile = "<img src=x onerror=alert(1)>"

    def span(span_id: str, step: str, **extra: object) -> TraceSpan:
        return TraceSpan(
            span_id=span_id, parent_span_id="", name=f"{step} span", kind="Client", service_name="bot",
            start_time="2026-05-01T12:00:00Z", offset_ms=0, duration_ms=10, depth=0, status="Ok",
            status_message="", inference=None, step=step, **extra,
        )  # fmt: skip

    tool = ToolCall(name=hostile, call_id="", mcp_method="tools/call", mcp_session_id="s")
    found = Retrieval(data_source="kb-main", document_count=2, documents=[Document(id="d", score=1)])
    spans = [span("a" * 16, "tool_call", tool=tool), span("b" * 16, "retrieval", retrieval=found)]
    trace = Trace(
        trace_id="c" * 32, start_time="2026-05-01T12:00:00Z", duration_ms=10, span_count=2,
        truncated=False, inferences=0, total_tokens=0, total_cost=0, unpriced_inferences=0,
        tool_calls=1, retrievals=1, spans=spans,
    )  # fmt: skip
    request = SimpleNamespace(url=SimpleNamespace(path="/ui/traces/x"))
    session = SimpleNamespace(admin=False, csrf_token="t", project_id="p")
    html = (
        templates()
        .env.get_template("trace.html")
        .render(request=request, session=session, trace=trace, bars=bars(trace.spans, 10), selected="")
    )
    assert hostile not in html and "&lt;img src=x" in html
    assert 'data-step="tool_call"' in html and "MCP tools/call" in html
    assert 'data-step="retrieval"' in html and "2 documents" in html
    assert 'data-testid="trace-tool-calls">1<' in html and 'data-testid="trace-retrievals">1<' in html


def test_a_page_that_fails_says_so_with_the_same_protective_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in a page is a 500 page, served with the dashboard's CSP, nosniff, frame and cache
    headers like every page (Starlette answers it outside the app's own middleware: it was a bare
    "Internal Server Error" without them)."""
    from inferline.ui import auth

    def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(auth, "_signin_form", broken)
    app = add_dashboard(api_app(Keys(), ReadOnlySql("chdb://", "default"), lambda: True, MetricsAccess.of()))
    page = TestClient(app, raise_server_exceptions=False).get("/ui/signin")
    assert page.status_code == 500
    assert "Something went wrong" in page.text
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
