"""The web dashboard in a real browser (Debian's Chromium through Playwright) against a running
service holding inferences sent through OTLP: the way in from `/`, sign-in, the Inferences page
(filters, sort, paging, deep links, totals, export), the detail tabs and feedback, hostile content,
and project isolation. One service and one browser serve the whole module; screenshots of each
page land in tests/artifacts/screenshots/."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect, sync_playwright

from inferline.processors.normalise import inference_id
from inferline.ui.listing import parse_view
from inferline.ui.security import CONTENT_SECURITY_POLICY
from tests.api_helpers import CANARY, Sent, api, seed
from tests.conftest import Service, make_service, running_with_other_project
from tests.otlp_helpers import sdk_spans
from tests.ui_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    XSS_CORPUS,
    XSS_FEATURE,
    XSS_SESSION,
    PageWatch,
    agent_trace,
    export_spans,
    row_ids,
    shot,
    sign_in,
    wait_for_rows,
    xss_spans,
)

pytestmark = pytest.mark.e2e
F = TypeVar("F", bound=Callable[..., None])


def browser_test(test: F) -> F:
    """Marks a test that drives Chromium (`-m browser`); skipped where Debian's chromium is missing."""
    skip = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium)")
    return pytest.mark.browser(skip(test))


PAGER_USER = "u_123"  # the user of sdk_spans' default attributes: only the paging rows have it
PAGER_ROWS = 30
AGENT_CALLS = 2  # the model calls of agent_trace()


ADMIN_KEY = "ui-test-admin-key"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The shared fixture's service, with an admin key for the projects and keys page."""
    svc = make_service(tmp_path_factory.mktemp("svc"), INFERLINE_ADMIN_KEY=ADMIN_KEY)
    yield from running_with_other_project(svc)


class Data:
    def __init__(
        self, mine: list[Sent], theirs: list[Sent], pager: list[str], xss: list[str], agent: list[Any]
    ) -> None:
        self.mine = mine
        self.theirs = theirs
        self.pager = pager  # newest first
        self.xss = xss
        self.agent = agent  # the agent trace's spans, in start order

    def where(self, **conditions: object) -> list[Sent]:
        return [s for s in self.mine if all(getattr(s, k) == v for k, v in conditions.items())]


@pytest.fixture(scope="module")
def data(service: Service) -> Data:
    mine, theirs, _ = seed(service)
    # Thirty plain calls, one per SDK span, for paging (newest first is the reverse of sending).
    pager = export_spans(service, service.key, sdk_spans(count=PAGER_ROWS, service_name="pager-bot"))
    xss = export_spans(service, service.key, xss_spans())
    agent = agent_trace()
    export_spans(service, service.key, agent)
    service.settle()
    return Data(mine, theirs, list(reversed(pager)), xss, agent)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium (/usr/bin/chromium)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    yield ctx
    ctx.close()


@pytest.fixture
def watched(context: BrowserContext, service: Service) -> Iterator[tuple[Page, PageWatch]]:
    """A page whose every dialog, console error and foreign request is recorded; the test ends
    by checking none happened."""
    watch = PageWatch(service.api_url)
    page = watch.attach(context.new_page())
    yield page, watch
    watch.assert_inert()


def inferences_url(service: Service, query: str = "") -> str:
    return f"{service.api_url}/ui/inferences" + (f"?{query}" if query else "")


# --- the way in ------------------------------------------------------------------------------


def test_browser_at_root_lands_in_dashboard_and_sql_clients_do_not(service: Service) -> None:
    browser_like = httpx.get(f"{service.api_url}/", headers={"accept": "text/html,*/*"})
    assert browser_like.status_code == 303 and browser_like.headers["location"] == "/ui/"
    # curl and ClickHouse clients at / still reach the SQL interface, with or without a query.
    plain = httpx.get(f"{service.api_url}/")
    assert plain.status_code == 401 and "Authentication failed" in plain.text
    auth = {"authorization": f"Bearer {service.key}"}
    by_get = httpx.get(f"{service.api_url}/", params={"query": "SELECT 40 + 2"}, headers=auth)
    assert (by_get.status_code, by_get.text) == (200, "42\n")
    as_browser_with_query = httpx.get(
        f"{service.api_url}/", params={"query": "SELECT 1"}, headers={**auth, "accept": "text/html"}
    )
    assert (as_browser_with_query.status_code, as_browser_with_query.text) == (200, "1\n")
    by_post = httpx.post(
        f"{service.api_url}/", content="SELECT 2 + 2", headers={**auth, "accept": "text/html"}
    )
    assert (by_post.status_code, by_post.text) == (200, "4\n")
    assert httpx.get(f"{service.api_url}/ping", headers={"accept": "text/html"}).text == "Ok.\n"


def test_pages_need_a_session(service: Service, data: Data) -> None:
    some_id = data.mine[0].inference_id
    for path in ("/ui/", "/ui/inferences", f"/ui/inferences/{some_id}", "/ui/inferences/export"):
        r = httpx.get(f"{service.api_url}{path}")
        assert (r.status_code, r.headers.get("location")) == (303, "/ui/signin"), path
    forged = httpx.post(
        f"{service.api_url}/ui/inferences/{some_id}/feedback",
        data={"rating": "1"},
        cookies={"inferline_session": "made-up"},
    )
    assert (forged.status_code, forged.headers.get("location")) == (303, "/ui/signin")


def test_ui_responses_carry_the_security_headers(service: Service) -> None:
    for path in ("/ui/signin", "/ui/static/app.js"):
        headers = httpx.get(f"{service.api_url}{path}").headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
    assert httpx.get(f"{service.api_url}/ui/signin").headers["cache-control"] == "no-store"


@browser_test
def test_the_api_docs_run_from_this_origin_under_a_strict_policy(
    service: Service, watched: tuple[Page, PageWatch]
) -> None:
    """/docs (Swagger UI) loaded its script from a CDN onto the dashboard's origin, where a
    compromised copy would act with the operator's session. Now it is the pinned copy served here,
    started without inline script, and the page lists the API's operations."""
    page, watch = watched
    response = page.goto(f"{service.api_url}/docs")
    assert response is not None and response.status == 200
    assert "script-src 'self';" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    page.get_by_text("List inferences").first.wait_for(timeout=15_000)
    watch.assert_inert()


# --- signing in -------------------------------------------------------------------------------


@browser_test
def test_wrong_key_is_refused_on_the_form(service: Service, watched: tuple[Page, PageWatch]) -> None:
    page, _ = watched
    page.goto(f"{service.api_url}/")
    page.fill("#key", "il_not-a-real-key")
    with page.expect_response("**/ui/signin") as answer:
        page.click("form[action='/ui/signin'] button[type=submit]")
    assert answer.value.status == 401
    expect(page.get_by_role("alert")).to_have_text("That API key is not valid (unknown or revoked).")
    assert not any(c["name"] == "inferline_session" for c in page.context.cookies())
    shot(page, "signin-error")


@browser_test
def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_it(
    service: Service, data: Data, watched: tuple[Page, PageWatch]
) -> None:
    page, _ = watched
    page.goto(f"{service.api_url}/")
    shot(page, "signin")
    sign_in(page, service, service.key)
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "inferline_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain HTTP here; set over TLS
    assert service.key not in cookie["value"] and service.key not in page.url
    # Scripts can read neither the key nor the cookie (htmx keeps only the current path in
    # sessionStorage, and no page in localStorage: historyCacheSize is 0).
    stored = page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}, document.cookie])")
    assert service.key not in stored and cookie["value"] not in stored
    assert page.evaluate("() => localStorage.length") == 0
    expect(page.get_by_test_id("project")).to_have_text("default")

    page.click("form[action='/ui/signout'] button")
    page.wait_for_url("**/ui/signin")
    page.goto(inferences_url(service))
    assert page.url.endswith("/ui/signin")  # the old cookie opens nothing any more


@browser_test
def test_forms_without_the_csrf_token_are_refused(
    service: Service, data: Data, context: BrowserContext
) -> None:
    page = context.new_page()
    sign_in(page, service, service.key)
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    target = data.mine[0].inference_id
    r = httpx.post(
        f"{service.api_url}/ui/inferences/{target}/feedback",
        data={"rating": "1", "csrf": "guessed"},
        cookies=cookies,
    )
    assert r.status_code == 403
    page.goto(f"{service.api_url}/ui/inferences/{target}?tab=feedback")
    expect(page.get_by_test_id("feedback-count")).to_have_text("0")  # nothing was stored


# --- the Inferences page ---------------------------------------------------------------------


@browser_test
def test_filter_sort_and_totals(service: Service, data: Data, watched: tuple[Page, PageWatch]) -> None:
    page, _ = watched
    sign_in(page, service, service.key)
    everything = len(data.mine) + PAGER_ROWS + len(data.xss) + AGENT_CALLS
    expect(page.get_by_test_id("total-count")).to_have_text(str(everything))
    shot(page, "inferences")

    page.fill("input[name=provider]", "anthropic")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**provider=anthropic**")
    anthropic = data.where(provider="anthropic")
    newest_first = [s.inference_id for s in sorted(anthropic, key=lambda s: -s.start_ns)]
    expect(page.locator("tr[data-inference-id]")).to_have_count(len(anthropic))
    wait_for_rows(page, newest_first)
    expect(page.get_by_test_id("total-count")).to_have_text(str(len(anthropic)))
    expect(page.get_by_test_id("total-tokens")).to_have_text(f"{sum(s.total_tokens for s in anthropic):,}")

    page.click("a[data-sort=latency]")  # descending first
    page.wait_for_url("**sort=latency**")
    wait_for_rows(page, [s.inference_id for s in sorted(anthropic, key=lambda s: -s.latency_ms)])
    page.click("a[data-sort=latency]")
    page.wait_for_url("**order=asc**")
    wait_for_rows(page, [s.inference_id for s in sorted(anthropic, key=lambda s: s.latency_ms)])
    assert "provider=anthropic" in page.url  # sorting kept the filter
    shot(page, "inferences-filtered")

    page.select_option("select[name=status]", "error")
    page.fill("input[name=provider]", "")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**status=error**")
    # The form keeps the sort (latency, ascending) while the filters change.
    failed = [s.inference_id for s in sorted(data.mine, key=lambda s: s.latency_ms) if not s.success]
    wait_for_rows(page, failed)
    expect(page.locator("tr[data-inference-id] .badge.error")).to_have_count(len(failed))


@browser_test
def test_every_filter_of_the_list_api_narrows_the_table(
    service: Service, data: Data, watched: tuple[Page, PageWatch]
) -> None:
    page, _ = watched
    sign_in(page, service, service.key)
    cases: list[tuple[str, set[str]]] = [
        (
            "model=gpt-4o-mini&provider=openai&tenant=globex",
            {s.inference_id for s in data.where(model="gpt-4o-mini", tenant="globex")},
        ),
        ("user=u_bob", {s.inference_id for s in data.where(user="u_bob")}),
        ("session=sess_2", {s.inference_id for s in data.where(session="sess_2")}),
        ("tag=feature%3Dsummarize", {s.inference_id for s in data.where(feature="summarize")}),
        ("q=TOPIC-3+please", {data.mine[3].inference_id}),
        (
            "min_tokens=400&max_tokens=480",
            {s.inference_id for s in data.mine if 400 <= s.total_tokens <= 480},
        ),
        (
            "max_latency=300&tenant=acme",
            {s.inference_id for s in data.where(tenant="acme") if s.latency_ms <= 300},
        ),
        ("range=1h&session=sess_0", set()),  # the seeded calls are three hours old
    ]
    for query, expected in cases:
        page.goto(inferences_url(service, query))
        assert set(row_ids(page)) == expected, query
        expect(page.get_by_test_id("total-count")).to_have_text(str(len(expected)))
    page.goto(inferences_url(service, "min_tokens=9&max_tokens=3"))
    expect(page.get_by_role("alert")).to_contain_text("max tokens")


@browser_test
def test_a_filter_with_a_line_feed_survives_the_forms_apply(
    service: Service, data: Data, watched: tuple[Page, PageWatch]
) -> None:
    """A session page links its calls as `session=a%0Ab`; a text box would drop the line feed and
    a submitted form turn it into CR LF: after Apply (another range) the filter is still "a\nb"."""
    page, _ = watched
    sign_in(page, service, service.key)
    page.goto(inferences_url(service, "range=24h&session=a%0Ab&user=u_bob"))
    page.select_option("select[name=range]", "30d")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**range=30d**")
    view = parse_view(parse_qsl(urlsplit(page.url).query))
    assert view.text == {"user": "u_bob", "session": "a\nb"}
    expect(page.get_by_test_id("total-count")).to_have_text("0")  # no seeded call is in it


@browser_test
def test_paging_and_deep_links(service: Service, data: Data, context: BrowserContext) -> None:
    page = context.new_page()
    sign_in(page, service, service.key)
    page.fill("input[name=user]", PAGER_USER)
    page.click("form.filters button[type=submit]")
    page.wait_for_url(f"**user={PAGER_USER}**")
    wait_for_rows(page, data.pager[:25])
    page.click("a[rel=next]")
    page.wait_for_url("**page=2**")
    wait_for_rows(page, data.pager[25:])
    expect(page.get_by_test_id("rows-shown")).to_have_text(f"26–{PAGER_ROWS} of {PAGER_ROWS}")

    # The address bar holds the view: a new tab at the same URL shows the same rows.
    shared = page.url
    other_tab = context.new_page()
    other_tab.goto(shared)
    wait_for_rows(other_tab, data.pager[25:])
    expect(other_tab.locator("input[name=user]")).to_have_value(PAGER_USER)

    page.click(".sizes a:text-is('50')")
    page.wait_for_url("**size=50**")
    wait_for_rows(page, data.pager)
    page.go_back()
    page.wait_for_url("**page=2**")
    wait_for_rows(page, data.pager[25:])


@browser_test
def test_rows_show_previews_tokens_latency_class_and_local_time(
    service: Service, data: Data, browser: Browser
) -> None:
    context = browser.new_context(timezone_id="Asia/Tokyo", viewport={"width": 1400, "height": 900})
    page = context.new_page()
    sign_in(page, service, service.key)
    s = data.mine[7]  # the long prompt
    page.goto(inferences_url(service, "q=Long+question"))
    row = page.locator(f"tr[data-inference-id='{s.inference_id}']")
    prompt = row.locator("td.preview").first
    expect(prompt.locator("summary")).to_have_text(s.prompt[:100])
    prompt.locator("summary").click()  # expands in place with the whole message
    expect(prompt.locator(".full pre.msg-text")).to_have_text(s.prompt)
    tokens = row.locator("td.num").first
    assert f"input {s.input_tokens}" in (tokens.get_attribute("title") or "")
    assert "cached read 0" in (tokens.get_attribute("title") or "")
    when = row.locator("time")
    assert when.get_attribute("datetime", timeout=1000) == _iso(s.start_ns)
    expect(when).to_contain_text("GMT+9")  # shown in the browser's zone

    # Latency is coloured against the project's p50 and p95 over the same range.
    overview = api(
        service,
        "POST",
        "/api/v1/metrics/analytics/overview",
        service.key,
        json={"from_date": (datetime.now(UTC) - timedelta(days=7)).isoformat()},
    ).json()["latency_ms"]
    page.goto(inferences_url(service, "size=100"))
    for cell_class, latency in page.locator("tr[data-inference-id] td.latency").evaluate_all(
        "cells => cells.map(c => [c.className, c.textContent])"
    ):
        ms = float(latency.replace(",", "").replace(" ms", ""))
        expected = "lat-fast" if ms <= overview["p50"] else "lat-mid" if ms <= overview["p95"] else "lat-slow"
        assert expected in cell_class, (latency, overview)
    context.close()


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1000 / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@browser_test
def test_export_of_the_current_filter(service: Service, data: Data, context: BrowserContext) -> None:
    page = context.new_page()
    sign_in(page, service, service.key)
    page.goto(inferences_url(service, "provider=anthropic&sort=cost&order=asc"))
    with page.expect_download() as csv_download:
        page.click(".exports a:text-is('CSV')")
    rows = list(csv.DictReader(io.StringIO(csv_download.value.path().read_text())))
    assert {r["inference_id"] for r in rows} == {s.inference_id for s in data.where(provider="anthropic")}
    assert [float(r["cost"]) for r in rows] == sorted(float(r["cost"]) for r in rows)
    with page.expect_download() as jsonl_download:
        page.click(".exports a:text-is('JSONL')")
    lines = [orjson.loads(line) for line in jsonl_download.value.path().read_text().splitlines()]
    assert [x["inference_id"] for x in lines] == [r["inference_id"] for r in rows]


# --- one inference -----------------------------------------------------------------------------


@browser_test
def test_detail_tabs_and_feedback(service: Service, data: Data, watched: tuple[Page, PageWatch]) -> None:
    page, _ = watched
    sign_in(page, service, service.key)
    s = data.mine[2]  # has a system prompt; openai
    page.goto(inferences_url(service, f"q={s.prompt.replace(' ', '+')}"))
    page.click(f"tr[data-inference-id='{s.inference_id}'] a.open")
    page.wait_for_url(f"**/ui/inferences/{s.inference_id}")
    overview = page.locator("[data-tab=overview]")
    for text in (s.inference_id, s.model, "api.openai.com", "api-test-bot", "test", s.tenant):
        expect(overview).to_contain_text(text)
    expect(page.locator("a[data-link=session]")).to_have_attribute("href", f"/ui/sessions/{s.session}")
    expect(page.locator("a[data-link=user]")).to_have_attribute(
        "href", f"/ui/users/sessions?user={s.user}&range=all"
    )
    shot(page, "detail-overview")

    page.click("nav.tabs a:text-is('Messages')")
    page.wait_for_url("**tab=messages")
    messages = page.locator(".chat .msg")
    expect(messages).to_have_count(3)
    expect(messages.nth(0).locator(".role")).to_have_text("system")
    expect(messages.nth(0).locator(".msg-text")).to_have_text(s.system)
    expect(messages.nth(1).locator(".msg-text")).to_have_text(s.prompt)
    expect(messages.nth(2).locator(".msg-text")).to_have_text(s.response)
    shot(page, "detail-messages")

    page.click("nav.tabs a:text-is('Performance')")
    page.wait_for_url("**tab=performance")
    expect(page.locator(".timing-marks")).to_contain_text(f"{s.latency_ms:,.0f} ms")
    expect(page.locator(".timing-bar .seg.waiting")).to_have_class(
        "seg waiting w-" + str(round(s.ttft_ms / s.latency_ms * 100)) if s.ttft_ms else "seg waiting w-100"
    )
    shot(page, "detail-performance")

    page.click("nav.tabs a:text-is('Raw')")
    page.wait_for_url("**tab=raw")
    expect(page.locator("table.raw").first).to_contain_text("gen_ai.request.model")
    shot(page, "detail-raw")

    page.click("nav.tabs a:text-is('Feedback')")
    page.wait_for_url("**tab=feedback")
    expect(page.get_by_test_id("feedback-count")).to_have_text("0")
    page.click("form.feedback-form button")  # nothing given
    expect(page.get_by_role("alert")).to_contain_text("give at least one of")
    page.check("input[name=thumbs][value=up]")
    page.select_option("select[name=rating]", "4")
    page.fill("textarea[name=comment]", "Exactly right, thanks!")
    page.click("form.feedback-form button")
    page.wait_for_url("**tab=feedback")
    expect(page.get_by_test_id("feedback-count")).to_have_text("1")
    item = page.locator(".feedback-item")
    expect(item).to_have_count(1)
    expect(item).to_contain_text("Exactly right, thanks!")
    expect(item.locator(".rating")).to_have_attribute("title", "4 of 5")
    shot(page, "detail-feedback")
    stored = api(service, "GET", f"/api/v1/metrics/inferences/{s.inference_id}/feedback", service.key).json()
    assert [(f["rating"], f["thumbs_up"]) for f in stored["items"]] == [(4, True)]


# --- hostile content ---------------------------------------------------------------------------


@browser_test
def test_hostile_content_renders_as_inert_text(
    service: Service, data: Data, watched: tuple[Page, PageWatch]
) -> None:
    page, _ = watched
    sign_in(page, service, service.key)
    page.goto(inferences_url(service, f"tag=feature%3D{XSS_FEATURE}&size=50"))
    expect(page.locator("tr[data-inference-id]")).to_have_count(len(XSS_CORPUS))
    for summary in page.locator("td.preview summary").all():
        summary.click()  # every preview expanded: the full messages load in place
    expect(page.locator("td.preview .full .chat")).to_have_count(2 * len(XSS_CORPUS))
    shot(page, "xss-list")
    for xss_id in data.xss:
        for tab in ("overview", "messages", "raw"):
            page.goto(f"{service.api_url}/ui/inferences/{xss_id}?tab={tab}")
            assert (
                page.locator("main img, main iframe, main svg, main script, main style, main link").count()
                == 0
            )
            assert page.locator("main a[href^='javascript']").count() == 0
    page.goto(f"{service.api_url}/ui/inferences/{data.xss[1]}?tab=messages")
    expect(page.locator(".chat .msg-text").first).to_have_text(XSS_CORPUS[1])  # shown, as text
    expect(page.locator(".tool-call pre").first).to_contain_text("onerror=alert")
    shot(page, "xss-messages")
    page.wait_for_timeout(300)  # anything an injected element would do has had its chance


# --- isolation ----------------------------------------------------------------------------------


@browser_test
def test_another_project_sees_none_of_this_projects_data(
    service: Service, data: Data, watched: tuple[Page, PageWatch]
) -> None:
    page, _ = watched
    sign_in(page, service, service.extra_keys["other"])
    expect(page.get_by_test_id("project")).to_have_text("other")
    page.goto(inferences_url(service, "range=all&size=100"))
    assert set(row_ids(page)) == {s.inference_id for s in data.theirs}
    mine = data.mine[10]  # its prompt holds a canary no row of `other` has
    detail = f"/ui/inferences/{mine.inference_id}"
    for path in (detail, f"{detail}?tab=feedback", f"{detail}/text?part=prompt"):
        answer = page.goto(f"{service.api_url}{path}")
        assert answer is not None and answer.status == 404, path
        expect(page.locator("main")).not_to_contain_text("canary")
    agent_trace_page = f"{service.api_url}/ui/traces/{data.agent[0].context.trace_id:032x}"
    answer = page.goto(agent_trace_page)
    assert answer is not None and answer.status == 404
    page.goto(inferences_url(service, f"q={CANARY}&range=all"))
    expect(page.get_by_test_id("total-count")).to_have_text("0")
    page.goto(inferences_url(service, "range=all"))
    with page.expect_download() as download:
        page.click(".exports a:text-is('JSONL')")
    exported = {orjson.loads(line)["inference_id"] for line in download.value.path().read_text().splitlines()}
    assert exported == {s.inference_id for s in data.theirs}


# --- analytics ----------------------------------------------------------------------------------


@browser_test
def test_analytics_charts_and_model_table(
    service: Service, data: Data, watched: tuple[Page, PageWatch]
) -> None:
    page, _ = watched
    # Two ratings on claude's calls: the model table shows their average.
    for sent, rating in zip(data.where(provider="anthropic"), (2, 5), strict=False):
        path = f"/api/v1/metrics/inferences/{sent.inference_id}/feedback"
        assert api(service, "POST", path, service.key, json={"rating": rating}).status_code == 201
    sign_in(page, service, service.key)
    page.click("nav.tabs-nav a:text-is('Analytics')")
    page.wait_for_url("**/ui/analytics")
    everything = len(data.mine) + PAGER_ROWS + len(data.xss) + AGENT_CALLS
    expect(page.get_by_test_id("requests")).to_have_text(str(everything))
    drawn = page.evaluate(
        "() => [...document.querySelectorAll('canvas[data-chart]')].map(c => {"
        "  const chart = Chart.getChart(c);"
        "  return chart && [c.id, chart.data.datasets.map(d => [d.label, d.data])];"
        "})"
    )
    charts = {chart_id: dict(series) for chart_id, series in drawn}
    assert set(charts) == {"chart-cost", "chart-requests", "chart-latency", "chart-ttft", "chart-throughput"}
    sdk_model = "gpt-4o-mini-2024-07-18"  # the response model of sdk_spans' calls
    assert set(charts["chart-cost"]) == {s.model for s in data.mine} | {sdk_model}
    overview = api(
        service,
        "POST",
        "/api/v1/metrics/analytics/overview",
        service.key,
        json={"from_date": (datetime.now(UTC) - timedelta(hours=24)).isoformat()},
    ).json()
    stacked = sum(v for values in charts["chart-cost"].values() for v in values)
    assert stacked == pytest.approx(overview["cost"]["total_usd"], rel=1e-6)
    assert sum(charts["chart-requests"]["requests"]) == everything
    assert set(charts["chart-latency"]) == {"p50", "p95", "p99"}
    claude = page.locator("tr[data-model='claude-3-5-sonnet-20241022'] td")
    expect(claude.nth(1)).to_have_text(str(len(data.where(provider="anthropic"))))
    expect(claude.nth(8)).to_have_text("3.50 (2)")  # the average of its calls' ratings, and how many
    # Time to first token: the SDK's calls of this hour took 412 ms; the seeded ones 40–50 ms.
    assert set(charts["chart-ttft"]) == {"p50", "p95"}
    ttft_p50 = [v for v in charts["chart-ttft"]["p50"] if v is not None]
    assert any(v == pytest.approx(412, abs=1) for v in ttft_p50), ttft_p50
    assert any(40 <= v <= 50 for v in ttft_p50), ttft_p50
    assert any(v and v > 0 for v in charts["chart-throughput"]["tokens/s"])

    # Cost and calls by provider, user, tenant and feature, each group linking to its calls.
    anthropic = page.locator("table[data-breakdown=provider] tr[data-key=anthropic] td")
    expect(anthropic.nth(1)).to_have_text(f"${_cost_of(service, service.key, provider='anthropic'):,.4f}")
    expect(anthropic.nth(3)).to_have_text(str(len(data.where(provider="anthropic"))))
    expect(page.locator("table[data-breakdown=user] tr[data-key=u_123] td").nth(3)).to_have_text(
        str(PAGER_ROWS)
    )
    expect(page.locator("table[data-breakdown=tenant] tr[data-key=globex] td").nth(3)).to_have_text(
        str(len(data.where(tenant="globex")))
    )
    xss_feature = page.locator(f"table[data-breakdown=feature] tr[data-key={XSS_FEATURE}]")
    expect(xss_feature.locator("td").nth(3)).to_have_text(str(len(XSS_CORPUS)))
    shot(page, "analytics")
    xss_feature.locator("a").click()
    page.wait_for_url(f"**/ui/inferences?range=24h&tag=feature%3D{XSS_FEATURE}")
    assert set(row_ids(page)) == set(data.xss)
    page.goto(f"{service.api_url}/ui/analytics")

    page.click(".range-picker a:text-is('Last hour')")
    page.wait_for_url("**range=1h")
    recent = PAGER_ROWS + len(data.xss) + AGENT_CALLS  # the seeded calls are 3 h old
    expect(page.get_by_test_id("requests")).to_have_text(str(recent))


# --- a trace ----------------------------------------------------------------------------------


@browser_test
def test_trace_waterfall_from_an_inference(
    service: Service, data: Data, watched: tuple[Page, PageWatch]
) -> None:
    page, _ = watched
    sign_in(page, service, service.key)
    agent, first_call, _tool, second_call = data.agent
    trace_id = f"{agent.context.trace_id:032x}"
    call_ids = export_ids(first_call, second_call)
    costs = [api(service, "GET", f"/api/v1/metrics/inferences/{i}", service.key).json() for i in call_ids]

    page.goto(f"{service.api_url}/ui/inferences/{call_ids[1]}")
    page.click("a[data-link=trace]")
    page.wait_for_url(f"**/ui/traces/{trace_id}?span=*")
    rows = page.locator("table.waterfall tbody tr")
    expect(rows).to_have_count(4)
    assert rows.evaluate_all("rs => rs.map(r => [r.dataset.spanId, r.dataset.depth])") == [
        [f"{s.context.span_id:016x}", depth]
        for s, depth in zip(data.agent, ("0", "1", "1", "1"), strict=True)
    ]
    expect(page.locator("tr.genai")).to_have_count(2)
    expect(page.locator("tr.selected")).to_have_attribute(
        "data-span-id", f"{second_call.context.span_id:016x}"
    )
    expect(page.get_by_test_id("trace-tokens")).to_have_text(str(100 + 20 + 150 + 40))
    total = sum(c["performance"]["cost"]["total"] for c in costs)
    expect(page.get_by_test_id("trace-cost")).to_have_text(f"${total:,.6f}")
    expect(page.get_by_test_id("trace-duration")).to_have_text("3,000 ms")
    # The tool span starts at 1.2 s of 3 s and lasts 0.3 s: the bar shows it.
    expect(rows.nth(2).locator(".bar")).to_have_class("bar off-40 w-10")
    shot(page, "trace")
    page.click("tr.genai >> nth=0 >> .genai-facts a")
    page.wait_for_url(f"**/ui/inferences/{call_ids[0]}")

    api_trace = api(service, "GET", f"/api/v1/traces/{trace_id}", service.key).json()
    assert (api_trace["span_count"], api_trace["inferences"], api_trace["total_tokens"]) == (4, 2, 310)
    other = api(service, "GET", f"/api/v1/traces/{trace_id}", service.extra_keys["other"])
    assert other.status_code == 404


def export_ids(*spans: Any) -> list[str]:
    return [inference_id("default", f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}") for s in spans]


# --- sessions and users ---------------------------------------------------------------------------


def _cost_of(service: Service, key: str, **filters: str) -> float:
    """The summed cost of the list API's rows matching these filters (unpriced rows add 0)."""
    items = api(
        service,
        "POST",
        "/api/v1/metrics/inferences/list",
        key,
        json={"from_date": "1970-01-01T00:00:00Z", "limit": 1000, **filters},
    ).json()["items"]
    return sum(item["cost"] or 0.0 for item in items)


@browser_test
def test_session_page_lists_the_calls_in_order_with_the_totals(
    service: Service, data: Data, watched: tuple[Page, PageWatch]
) -> None:
    page, _ = watched
    sign_in(page, service, service.key)
    calls = sorted(data.where(session="sess_1"), key=lambda s: s.start_ns)
    page.goto(f"{service.api_url}/ui/inferences/{calls[1].inference_id}")
    page.click("a[data-link=session]")
    page.wait_for_url("**/ui/sessions/sess_1")
    items = page.locator("li.call")
    expect(items).to_have_count(len(calls))
    assert items.evaluate_all("ls => ls.map(l => l.dataset.inferenceId)") == [s.inference_id for s in calls]
    for i, s in enumerate(calls):
        expect(items.nth(i).locator(".turn.user .text")).to_have_text(s.prompt[:100])
        expect(items.nth(i).locator(".turn.assistant .text")).to_have_text(s.response[:100])
    expect(page.get_by_test_id("session-calls")).to_have_text(str(len(calls)))
    expect(page.get_by_test_id("session-tokens")).to_have_text(f"{sum(s.total_tokens for s in calls):,}")
    expect(page.get_by_test_id("session-cost")).to_have_text(
        f"${_cost_of(service, service.key, session='sess_1'):,.6f}"
    )
    shown_costs = [
        float(t.replace("$", "").replace(",", "")) if t != "—" else 0.0
        for t in page.get_by_test_id("call-cost").all_inner_texts()
    ]
    assert sum(shown_costs) == pytest.approx(_cost_of(service, service.key, session="sess_1"), abs=1e-5)
    # Minutes apart: from the first call's start to the last call's end.
    span_ms = (calls[-1].start_ns - calls[0].start_ns) / 1e6 + calls[-1].latency_ms
    minutes, seconds = divmod(round(span_ms / 1000), 60)
    expect(page.get_by_test_id("session-duration")).to_have_text(f"{minutes} min {seconds} s")
    shot(page, "session")
    items.nth(0).locator("a.open").click()
    page.wait_for_url(f"**/ui/inferences/{calls[0].inference_id}")


@browser_test
def test_users_page_ranks_users_and_links_to_their_inferences_and_sessions(
    service: Service, data: Data, watched: tuple[Page, PageWatch]
) -> None:
    page, _ = watched
    sign_in(page, service, service.key)
    page.click("nav.tabs-nav a:text-is('Users')")
    page.wait_for_url("**/ui/users")
    xss_users = {f"u_mallory{text[:40]}" for text in XSS_CORPUS}
    users = {s.user for s in data.mine} | {PAGER_USER, "u_agent"} | xss_users
    cost = {user: _cost_of(service, service.key, user=user) for user in users}
    by_cost = page.get_by_test_id("by-cost").locator("tbody tr[data-user]")
    ranked = by_cost.evaluate_all("rs => rs.map(r => [r.dataset.user, r.children[2].textContent])")
    assert {user for user, _ in ranked} == users
    assert [shown for _, shown in ranked] == [f"${cost[user]:,.4f}" for user, _ in ranked]
    assert [cost[user] for user, _ in ranked] == sorted(cost.values(), reverse=True)
    by_calls = page.get_by_test_id("by-calls").locator("tbody tr[data-user]")
    expect(by_calls.first).to_have_attribute("data-user", PAGER_USER)
    expect(by_calls.first.locator("td").nth(3)).to_have_text(str(PAGER_ROWS))
    shot(page, "users")

    page.click("[data-testid=by-cost] tr[data-user=u_bob] a[data-link=inferences]")
    page.wait_for_url("**/ui/inferences?range=7d&user=u_bob")
    wait_for_rows(page, [s.inference_id for s in sorted(data.where(user="u_bob"), key=lambda s: -s.start_ns)])
    expect(page.locator("a[data-link=user]")).to_have_attribute(
        "href", "/ui/users/sessions?user=u_bob&range=7d"
    )

    page.goto(f"{service.api_url}/ui/users")
    page.click("[data-testid=by-cost] tr[data-user=u_alice] a[data-link=sessions]")
    page.wait_for_url("**/ui/users/sessions?user=u_alice&range=7d")
    alice = data.where(user="u_alice")
    expect(page.get_by_test_id("user-calls")).to_have_text(str(len(alice)))
    sessions = page.locator("table.sessions tr[data-session]")
    assert set(sessions.evaluate_all("rs => rs.map(r => r.dataset.session)")) == {s.session for s in alice}
    shot(page, "user-sessions")
    page.click("table.sessions tr[data-session=sess_2] a[data-link=session]")
    page.wait_for_url("**/ui/sessions/sess_2")
    expect(page.locator("li.call")).to_have_count(len(data.where(session="sess_2")))


@browser_test
def test_sessions_and_users_pages_show_another_project_nothing(
    service: Service, data: Data, watched: tuple[Page, PageWatch]
) -> None:
    page, _ = watched
    sign_in(page, service, service.extra_keys["other"])
    only_mine = "sess_1"  # `other` has sess_0 only
    assert only_mine not in {s.session for s in data.theirs}
    answer = page.goto(f"{service.api_url}/ui/sessions/{only_mine}")
    assert answer is not None and answer.status == 404
    expect(page.locator("main")).not_to_contain_text("topic-")
    page.goto(f"{service.api_url}/ui/sessions/sess_0")  # both projects have one: theirs only
    shown = page.locator("li.call").evaluate_all("ls => ls.map(l => l.dataset.inferenceId)")
    assert set(shown) == {s.inference_id for s in data.theirs if s.session == "sess_0"}
    page.goto(f"{service.api_url}/ui/users?range=all")
    listed = page.locator("[data-testid=by-cost] tr[data-user]").evaluate_all(
        "rs => rs.map(r => r.dataset.user)"
    )
    assert set(listed) == {s.user for s in data.theirs}
    page.goto(f"{service.api_url}/ui/users/sessions?user={PAGER_USER}")
    expect(page.get_by_test_id("user-calls")).to_have_text("0")
    expect(page.locator("table.sessions tr[data-session]")).to_have_count(0)


@browser_test
def test_hostile_ids_and_content_stay_inert_on_the_sessions_and_users_pages(
    service: Service, data: Data, watched: tuple[Page, PageWatch]
) -> None:
    page, _ = watched
    sign_in(page, service, service.key)

    def nothing_injected() -> None:
        assert (
            page.locator("main img, main iframe, main svg, main script, main style, main link").count() == 0
        )
        assert page.locator("main a[href^='javascript']").count() == 0

    page.goto(f"{service.api_url}/ui/users?range=all")
    nothing_injected()
    page.locator("[data-testid=by-cost] tr[data-user^=u_mallory] a[data-link=sessions]").first.click()
    page.wait_for_url("**/ui/users/sessions?user=u_mallory*")
    nothing_injected()
    page.click("table.sessions a[data-link=session]")
    page.wait_for_url("**/ui/sessions/xss%2F*")
    expect(page.get_by_test_id("session-id")).to_have_text(XSS_SESSION)  # the whole id, as text
    xss_calls = page.locator("li.call").evaluate_all("ls => ls.map(l => l.dataset.inferenceId)")
    assert xss_calls == data.xss  # sent in corpus order, one after another
    expect(page.locator("li.call .turn.user .text").nth(1)).to_have_text(f"xss-1 {XSS_CORPUS[1]}"[:100])
    nothing_injected()
    shot(page, "xss-session")
    page.wait_for_timeout(300)  # anything an injected element would do has had its chance


# --- projects and keys ----------------------------------------------------------------------------


@browser_test
def test_admin_manages_projects_and_keys_and_revocation_ends_sessions(
    service: Service, data: Data, browser: Browser
) -> None:
    admin_context = browser.new_context(viewport={"width": 1400, "height": 900})
    admin_page = admin_context.new_page()
    sign_in(admin_page, service, ADMIN_KEY, landing="**/ui/admin")
    expect(admin_page.get_by_test_id("project")).to_have_text("admin")
    for project in ("default", "other"):
        expect(admin_page.locator(f"section[data-project='{project}']")).to_be_visible()
    admin_page.goto(inferences_url(service))
    assert admin_page.url.endswith("/ui/admin")  # the admin key reads no project's data

    admin_page.fill("input[name=project_id]", "bad id!")
    admin_page.click("form[action='/ui/admin/projects'] button")
    expect(admin_page.get_by_role("alert")).to_contain_text("A project id is 1–64 letters")
    admin_page.fill("input[name=project_id]", "team-b")
    admin_page.click("form[action='/ui/admin/projects'] button")
    team = admin_page.locator("section[data-project='team-b']")
    expect(team).to_contain_text("No keys yet.")
    team.locator("input[name=name]").fill("browser")
    with admin_page.expect_response("**/ui/admin/projects/team-b/keys") as created:
        team.locator("button:text-is('Create key')").click()
    assert created.value.status == 303  # Post/Redirect/Get
    admin_page.wait_for_url("**/ui/admin")
    new_key = admin_page.get_by_test_id("new-key").inner_text()
    assert new_key.startswith("il_") and new_key not in admin_page.url
    shot(admin_page, "admin")
    admin_page.reload()  # re-requests the page: no form is posted again, no second key is made
    expect(admin_page.get_by_test_id("new-key")).to_have_count(0)  # shown once
    assert new_key not in admin_page.content()
    key_row = admin_page.locator("section[data-project='team-b'] tr[data-key-id]")
    expect(key_row).to_have_count(1)
    expect(key_row).to_contain_text("browser")
    expect(key_row.locator(".badge")).to_have_text("active")

    user_context = browser.new_context(viewport={"width": 1400, "height": 900})
    user_page = user_context.new_page()
    sign_in(user_page, service, new_key)
    expect(user_page.get_by_test_id("project")).to_have_text("team-b")
    expect(user_page.get_by_test_id("total-count")).to_have_text("0")
    forbidden = user_page.goto(f"{service.api_url}/ui/admin")
    assert forbidden is not None and forbidden.status == 403

    key_row.locator("button:text-is('Revoke')").click()
    expect(admin_page.locator("section[data-project='team-b'] tr[data-key-id] .badge")).to_have_text(
        "revoked"
    )
    user_page.goto(inferences_url(service))
    assert user_page.url.endswith("/ui/signin")  # the revoked key's session ended with it
    user_page.fill("#key", new_key)
    user_page.click("form[action='/ui/signin'] button[type=submit]")
    expect(user_page.get_by_role("alert")).to_have_text("That API key is not valid (unknown or revoked).")
    admin_context.close()
    user_context.close()


@browser_test
def test_analytics_auto_refresh_swaps_in_new_figures_without_a_page_load(
    service: Service, data: Data, watched: tuple[Page, PageWatch]
) -> None:
    """Last of the browser tests: it sends one more call (every count above is taken before)."""
    page, _ = watched
    page.clock.install()  # htmx's timers run on this clock: 30 s pass at once
    sign_in(page, service, service.key)
    page.goto(f"{service.api_url}/ui/analytics?range=1h")
    expect(page.locator("[data-testid=auto-refresh]")).to_have_count(0)  # off by default
    before = int(page.get_by_test_id("requests").inner_text())
    page.select_option("select[name=refresh]", "30")
    page.wait_for_url("**/ui/analytics?range=1h&refresh=30")
    expect(page.locator("[data-testid=auto-refresh]")).to_have_attribute("hx-trigger", "every 30s")
    page.evaluate("() => { window.sameDocument = true; }")  # gone if the page were loaded anew

    export_spans(service, service.key, sdk_spans(count=1, service_name="late-bot"))
    service.settle()
    with page.expect_request(lambda r: "/ui/analytics?" in r.url and r.headers.get("hx-request") == "true"):
        page.clock.run_for(31_000)
    expect(page.get_by_test_id("requests")).to_have_text(str(before + 1))
    assert page.evaluate("() => window.sameDocument") is True
    assert page.url.endswith("/ui/analytics?range=1h&refresh=30")
    page.clock.run_for(100)  # htmx settles the swap 20 ms later (on the installed clock)
    page.wait_for_function(
        "() => [...document.querySelectorAll('canvas[data-chart]')].filter(Chart.getChart).length == 5"
    )  # the swapped-in charts are drawn
    requests = page.evaluate(
        "() => Chart.getChart(document.getElementById('chart-requests')).data.datasets[0].data"
    )
    assert sum(requests) == before + 1
    # And again, every 30 s, until it is turned off.
    with page.expect_response(
        lambda r: "/ui/analytics?" in r.url and r.request.headers.get("hx-request") == "true"
    ):
        page.clock.run_for(31_000)
    page.clock.run_for(100)
    # Turned off while a poll is on its way (its answer held back here): the poll is aborted, so
    # its older view (refresh on) never lands over the chosen one.
    held: list[Route] = []
    poll = f"{service.api_url}/ui/analytics?range=1h&refresh=30"
    page.route(poll, lambda route: held.append(route))
    with page.expect_request(poll):
        page.clock.run_for(31_000)
    with page.expect_event("requestfailed", lambda r: r.url == poll):
        page.select_option("select[name=refresh]", "off")
    page.wait_for_url("**/ui/analytics?range=1h&refresh=off")
    page.clock.run_for(100)
    for route in held:
        route.continue_()  # too late: nothing is waiting for it
    page.clock.run_for(100)
    expect(page.locator("[data-testid=auto-refresh]")).to_have_count(0)
    expect(page.locator("select[name=refresh]")).to_have_value("off")


@browser_test
def test_the_service_logged_no_key_and_no_content(service: Service, data: Data) -> None:
    """After every page above was used: the log has the dashboard's audit lines, and neither a
    key nor text the pages searched for or showed (keys, searches and content never reach a log)."""
    logs = service.logs()
    assert '"action": "ui.signin"' in logs or '"action":"ui.signin"' in logs
    for secret in (
        service.key,
        service.extra_keys["other"],
        ADMIN_KEY,
        CANARY,
        "xss-script",
        "Exactly right",
    ):
        assert secret not in logs, secret
