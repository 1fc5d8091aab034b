"""The inferences page's state as it lives in the URL (filters, sort, page, page size), and its
translation into the API's own request models: a link holds the whole view."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

import orjson
from pydantic import ValidationError

from inferline.api.filters import InferenceFilters
from inferline.api.inference_models import ExportRequest, ListRequest

PAGE_SIZES = (25, 50, 100)
SORTABLE = ("timestamp", "tokens", "latency", "cost")
# Relative ranges: a shared link shows the same filters over the range ending now.
RANGES: dict[str, timedelta | None] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
    "all": None,
}
DEFAULT_RANGE = "7d"
_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
# URL parameter → InferenceFilters field, for the plain text filters.
_TEXT_FILTERS = {
    "model": "model",
    "provider": "provider",
    "user": "user",
    "session": "session",
    "tenant": "tenant",
    "q": "search",
}
_INT_FILTERS = {"min_tokens": "min_tokens", "max_tokens": "max_tokens"}


@dataclass(frozen=True)
class ListView:
    """What the URL asks for, as given (so the form shows it back); `errors` says what of it
    could not be used."""

    range: str = DEFAULT_RANGE
    date_from: str = ""  # datetime-local text, UTC
    date_to: str = ""
    status: Literal["", "ok", "error"] = ""
    text: dict[str, str] = field(default_factory=dict)  # URL name → value, for _TEXT_FILTERS
    min_tokens: str = ""
    max_tokens: str = ""
    max_latency: str = ""
    tags: tuple[str, ...] = ()  # "key=value"
    sort: str = "timestamp"
    order: Literal["asc", "desc"] = "desc"
    page: int = 1
    size: int = 25
    errors: tuple[str, ...] = ()

    def query(self, **changes: Any) -> str:
        """This view's URL query, with `changes` (e.g. page=2) applied; defaults are left out."""
        view = replace(self, **changes) if changes else self
        pairs: list[tuple[str, str]] = []
        if view.range != DEFAULT_RANGE:
            pairs.append(("range", view.range))
        pairs += [(k, v) for k, v in (("from", view.date_from), ("to", view.date_to)) if v]
        if view.status:
            pairs.append(("status", view.status))
        pairs += [(name, view.text[name]) for name in _TEXT_FILTERS if view.text.get(name)]
        pairs += [
            (k, v)
            for k, v in (
                ("min_tokens", view.min_tokens),
                ("max_tokens", view.max_tokens),
                ("max_latency", view.max_latency),
            )
            if v
        ]
        pairs += [("tag", t) for t in view.tags]
        if view.sort != "timestamp":
            pairs.append(("sort", view.sort))
        if view.order != "desc":
            pairs.append(("order", view.order))
        if view.page != 1:
            pairs.append(("page", str(view.page)))
        if view.size != PAGE_SIZES[0]:
            pairs.append(("size", str(view.size)))
        return urlencode(pairs)

    def sort_query(self, column: str) -> str:
        """The link of a column header: sort by it (descending first), or flip its order."""
        order = ("asc" if self.order == "desc" else "desc") if self.sort == column else "desc"
        return self.query(sort=column, order=order, page=1)

    def filter_query(self, name: str, value: str) -> str:
        """This view narrowed to one value of a text filter (a model, a user …), from page 1."""
        return self.query(text={**self.text, name: value}, page=1)

    def export_query(self, fmt: str) -> str:
        """The export of every row this view's filters match, in its order."""
        rest = self.query(page=1)
        return f"{rest}&format={fmt}" if rest else f"format={fmt}"

    @property
    def filtered(self) -> bool:
        return self != ListView(range=self.range, sort=self.sort, order=self.order, size=self.size)

    @property
    def kept_whole(self) -> str:
        """The filters a form cannot carry as typed text (a value with a line feed: a text box
        drops it, and a submitted form turns it into CR LF), as JSON for the form's hidden field
        `whole`; "" when there are none."""
        kept: dict[str, Any] = {n: v for n, v in self.text.items() if _multiline(v)}
        tags = [t for t in self.tags if _multiline(t)]
        if tags:
            kept["tag"] = tags
        return orjson.dumps(kept).decode() if kept else ""


def _multiline(value: str) -> bool:
    return "\n" in value or "\r" in value


def _whole(text: str | None) -> tuple[dict[str, str], list[str]]:
    """The text filters and tags of the form's `whole` field (`ListView.kept_whole`)."""
    if not text:
        return {}, []
    try:
        kept = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}, []
    if not isinstance(kept, dict):
        return {}, []
    filters = {k: v for k, v in kept.items() if k in _TEXT_FILTERS and isinstance(v, str) and v}
    tags = kept.get("tag")
    return filters, [t for t in tags if isinstance(t, str) and t] if isinstance(tags, list) else []


def parse_view(params: list[tuple[str, str]]) -> ListView:
    """The view a URL query asks for; unusable values are dropped and named in `errors`. Ids,
    names and tag values are taken exactly as given (a user id may end in a space, and the
    pages' own links carry such values whole); an empty one is no filter."""
    exact = dict(params)
    single = {k: v.strip() for k, v in params}
    whole_text, whole_tags = _whole(exact.get("whole"))
    exact.update(whole_text)
    errors: list[str] = []
    range_name = single.get("range", DEFAULT_RANGE)
    if range_name not in RANGES:
        errors.append(f"unknown range {range_name!r}")
        range_name = DEFAULT_RANGE
    status = single.get("status", "")
    if status not in ("", "ok", "error"):
        errors.append("status must be ok or error")
        status = ""
    sort = single.get("sort", "timestamp")
    if sort not in SORTABLE:
        errors.append(f"cannot sort by {sort!r}")
        sort = "timestamp"
    order = single.get("order", "desc")
    if order not in ("asc", "desc"):
        order = "desc"
    size = _int(single.get("size"), PAGE_SIZES[0])
    if size not in PAGE_SIZES:
        errors.append(f"page size must be one of {', '.join(map(str, PAGE_SIZES))}")
        size = PAGE_SIZES[0]
    return ListView(
        range=range_name,
        date_from=single.get("from", ""),
        date_to=single.get("to", ""),
        status=status,  # type: ignore[arg-type]
        # The search box is what someone typed: trimmed. Ids and names come from the pages' links.
        text={
            name: value
            for name in _TEXT_FILTERS
            if (value := single.get(name) if name == "q" else exact.get(name))
        },
        min_tokens=single.get("min_tokens", ""),
        max_tokens=single.get("max_tokens", ""),
        max_latency=single.get("max_latency", ""),
        tags=tuple(v for k, v in params if k == "tag" and v.strip()) + tuple(whole_tags),
        sort=sort,
        order=order,  # type: ignore[arg-type]
        page=max(1, _int(single.get("page"), 1)),
        size=size,
        errors=tuple(errors),
    )


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


def filter_fields(view: ListView, now: datetime) -> dict[str, Any]:
    """The view's filters as InferenceFilters fields (not yet validated)."""
    fields: dict[str, Any] = {}
    span = RANGES[view.range]
    fields["from_date"] = view.date_from or (now - span if span else _BEGINNING)
    if view.date_to:
        fields["to_date"] = view.date_to
    if view.status:
        fields["is_success"] = view.status == "ok"
    for name, field_name in _TEXT_FILTERS.items():
        if view.text.get(name):
            fields[field_name] = view.text[name]
    for name, field_name in _INT_FILTERS.items():
        if getattr(view, name):
            fields[field_name] = getattr(view, name)
    if view.max_latency:
        fields["max_latency_ms"] = view.max_latency
    tags: dict[str, str] = {}
    for tag in view.tags:
        key, _, value = tag.partition("=")
        # The pages link "key=value" with the value whole; spaces around "=" were typed.
        tags[key.strip()] = value.lstrip() if key != key.rstrip() else value
    if tags:
        fields["tags"] = tags
    return fields


def list_request(view: ListView, now: datetime) -> ListRequest | list[str]:
    """The API's list request for this view, or what is wrong with the filters."""
    bad_tags = [t for t in view.tags if "=" not in t or not t.partition("=")[0].strip()]
    if bad_tags:
        return [f"tag filters are key=value: {', '.join(bad_tags)}"]
    fields = {
        **filter_fields(view, now),
        "sort_by": view.sort,
        "sort_order": view.order,
        "limit": view.size,
        "offset": (view.page - 1) * view.size,
    }
    try:
        return ListRequest.model_validate(fields)
    except ValidationError as e:
        return _messages(e)


def export_request(view: ListView, now: datetime) -> ExportRequest | list[str]:
    fields = {**filter_fields(view, now), "sort_by": view.sort, "sort_order": view.order}
    try:
        return ExportRequest.model_validate(fields)
    except ValidationError as e:
        return _messages(e)


_LABELS = {
    "from_date": "from",
    "to_date": "to",
    "max_latency_ms": "max latency",
    "min_tokens": "min tokens",
    "max_tokens": "max tokens",
    "search": "search",
    "offset": "page",
}


def _messages(error: ValidationError) -> list[str]:
    out = []
    for err in error.errors(include_url=False, include_context=False):
        field_name = str(err["loc"][0]) if err["loc"] else ""
        label = _LABELS.get(field_name, field_name)
        out.append(f"{label}: {err['msg']}" if label else str(err["msg"]))
    return out


def unfiltered(filters: InferenceFilters) -> dict[str, Any]:
    """Only the date range of `filters`: the project's baseline over the same time."""
    return {"from_date": filters.from_date, "to_date": filters.to_date}
