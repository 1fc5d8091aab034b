"""The Jinja2 environment: every template autoescaped, and the few formatting filters pages use.
Data is never marked safe: whatever a prompt holds is shown as text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.templating import Jinja2Templates

from inferline.ui import links

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


def usd(value: float | None, digits: int = 6) -> str:
    if value is None:
        return "—"
    return f"${value:,.{digits}f}"


def number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def milliseconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f} ms" if value >= 10 else f"{value:,.1f} ms"


def duration(value: float | None) -> str:
    """Milliseconds as the largest unit that reads well: 850 ms, 12.4 s, 3 min 5 s, 2 h 4 min."""
    if value is None:
        return "—"
    if value < 1000:
        return milliseconds(value)
    seconds = value / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def signed_percent(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:+.0f}%"


def pretty(value: Any) -> str:
    """A value as indented JSON; text that is itself JSON (message lists, tool arguments) is
    parsed first so it reads as structure."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("{", "["):
            try:
                value = orjson.loads(stripped)
            except orjson.JSONDecodeError:
                return value
        else:
            return value
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def percent_class(fraction: float) -> str:
    """A width class (`w-0` … `w-100`, app.css): bars are drawn without inline styles, which the
    Content-Security-Policy forbids."""
    return f"w-{max(0, min(100, round(fraction * 100)))}"


def templates() -> Jinja2Templates:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,  # every template, whatever its name
        undefined=StrictUndefined,  # a misspelt name fails a test instead of rendering empty
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        usd=usd,
        number=number,
        ms=milliseconds,
        duration=duration,
        signed_percent=signed_percent,
        pretty=pretty,
    )
    env.globals.update(percent_class=percent_class, filterable=links.filterable)
    env.tests["multiline"] = lambda value: isinstance(value, str) and ("\n" in value or "\r" in value)
    return Jinja2Templates(env=env)
