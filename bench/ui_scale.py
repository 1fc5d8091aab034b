"""The dashboard at scale: how long the Inferences and Analytics pages take to show their data in
a real browser with 1M inferences in the store. Figures are printed, never asserted; not a test.

    python -m bench.ui_scale [--rows 1000000] [--runs 5] [--spread] [--keep DIR]

Loads the query benchmark's synthetic inferences (bench/query.py: 7 days, 12 models, Pareto
users, 500k sessions; a rating on one call in a hundred; every row in the project the service's
key opens unless --spread keeps that benchmark's 20 projects) into a fresh chDB store, starts the
embedded service on it, signs in with Debian's Chromium through Playwright and times each page
from navigation to its data drawn (rows in the table, totals, every chart) — median and slowest
of --runs after a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from playwright.sync_api import Page, sync_playwright

from bench import query, services
from inferline.core.logging import configure_logging
from inferline.storage.clickhouse import connect
from inferline.storage.schema import migrate

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TIMEOUT_MS = 60_000


# A rating (and thumbs) on one call in a hundred: the model table's average rating reads them.
FEEDBACK_SQL = (
    "INSERT INTO feedback (project_id, inference_id, feedback_id, inference_time, created_at, thumbs_up, "
    "rating, comment, comment_sentiment, comment_sentiment_label, demonstration, pii_found, key_id) "
    "SELECT project_id, inference_id, generateUUIDv4(), start_time, now64(9), rand() % 2 = 0, "
    "1 + rand() % 5, '', NULL, '', '', map(), 'bench' FROM llm_inferences WHERE rand() % 100 = 0"
)


def load(data_dir: Path, rows: int, spread: bool) -> None:
    """The query benchmark's load (its INSERT … SELECT and rollup refill), into `data_dir`."""
    configure_logging("error")
    data_dir.mkdir(parents=True, exist_ok=True)
    client = connect(f"chdb://{(data_dir / 'clickhouse').resolve()}")
    migrate(client)
    loaded = query.load(client, rows, backfill=True, one_project=not spread)  # every rollup fed
    client.command(FEEDBACK_SQL)
    total, mine = client.query(
        "SELECT count(), countIf(project_id = {p:String}) FROM llm_inferences",
        parameters={"p": query.PROJECT},
    ).result_rows[0]
    client.close()
    print(
        f"  loaded {total:,} inferences ({mine:,} in project '{query.PROJECT}') in {loaded['load_s']} s,"
        f" rollups fed in {loaded['rollup_fill_s'] + loaded['backfill_s']:.1f} s",
        flush=True,
    )


# page name → (address, what shows that its data is drawn)
CHARTS_DRAWN = (
    "() => { const cs = [...document.querySelectorAll('canvas[data-chart]')];"
    " return typeof Chart !== 'undefined' && cs.length > 0 && cs.every(c => Chart.getChart(c)); }"
)
ROWS_SHOWN = "() => document.querySelectorAll('tr[data-inference-id]').length > 0"
PAGES: dict[str, tuple[str, str]] = {
    "inferences, last 7 days (default view)": ("/ui/inferences", ROWS_SHOWN),
    "inferences, all time, 100 a page, by cost": ("/ui/inferences?range=all&sort=cost&size=100", ROWS_SHOWN),
    "inferences, one model, last 24 hours": ("/ui/inferences?range=24h&model=gpt-4o", ROWS_SHOWN),
    "inferences, page 200": ("/ui/inferences?page=200", ROWS_SHOWN),
    "analytics, last 24 hours": ("/ui/analytics", CHARTS_DRAWN),
    "analytics, last 7 days": ("/ui/analytics?range=7d", CHARTS_DRAWN),
    "users, last 7 days": ("/ui/users", "() => document.querySelectorAll('tr[data-user]').length > 0"),
    # u_0 is the busiest user of the synthetic data (~1 call in 37); s_1 one of its 500k sessions.
    "a user's sessions, all time (busiest user)": (
        "/ui/users/sessions?user=u_0",
        "() => document.querySelectorAll('tr[data-session]').length > 0",
    ),
    "a session": ("/ui/sessions/s_1", "() => document.querySelectorAll('li.call').length > 0"),
}


def timed(page: Page, url: str, ready: str) -> float:
    started = time.perf_counter()
    page.goto(url, wait_until="commit", timeout=TIMEOUT_MS)
    page.wait_for_function(ready, timeout=TIMEOUT_MS)
    return (time.perf_counter() - started) * 1000


def served(url: str, cookies: dict[str, str]) -> float:
    """The page's HTML, every figure in it, without the browser (the server's share)."""
    started = time.perf_counter()
    httpx.get(url, cookies=cookies, timeout=TIMEOUT_MS / 1000).raise_for_status()
    return (time.perf_counter() - started) * 1000


def measure(api: str, key: str, runs: int, say: Callable[[str], None]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        page.goto(f"{api}/ui/signin")
        page.fill("#key", key)
        page.click("form[action='/ui/signin'] button[type=submit]")
        page.wait_for_url("**/ui/inferences", timeout=TIMEOUT_MS)
        cookies = {c["name"]: c["value"] for c in page.context.cookies()}
        for name, (path, ready) in PAGES.items():
            timed(page, api + path, ready)  # warm: columns into the page cache
            times = [timed(page, api + path, ready) for _ in range(runs)]
            server = [served(api + path, cookies) for _ in range(runs)]
            out[name] = {
                "median_ms": round(statistics.median(times)),
                "max_ms": round(max(times)),
                "server_median_ms": round(statistics.median(server)),
            }
            say(
                f"  {name:<44} {out[name]['median_ms']:6,} ms median, {out[name]['max_ms']:6,} ms slowest"
                f" (the server's HTML alone: {out[name]['server_median_ms']:,} ms)"
            )
        browser.close()
    return out


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--spread", action="store_true", help="the query benchmark's 20 projects")
    parser.add_argument("--keep", type=Path, help="build the store here and keep it (a directory named data)")
    parser.add_argument("--load-only", type=Path, help=argparse.SUPPRESS)  # the loading subprocess
    args = parser.parse_args(argv)
    if args.load_only:
        load(args.load_only, args.rows, args.spread)
        return {}
    with tempfile.TemporaryDirectory(prefix="inferline-ui-scale-") as tmp:
        store = args.keep or Path(tmp) / "data"
        if not (store / "clickhouse").exists():
            print(f"  loading {args.rows:,} synthetic inferences…", flush=True)
            loader = [
                sys.executable,
                "-m",
                "bench.ui_scale",
                "--rows",
                str(args.rows),
                "--load-only",
                str(store),
            ]
            # Its own process: chDB has one owner per store, and the service is the next.
            subprocess.run([*loader, *(["--spread"] if args.spread else [])], cwd=ROOT, check=True)
        started = time.perf_counter()
        with services.embedded_on(store, services.service_env([])) as target:
            print(
                f"  service up in {time.perf_counter() - started:.1f} s; timing pages in Chromium", flush=True
            )
            return measure(target.api, target.key, args.runs, lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
