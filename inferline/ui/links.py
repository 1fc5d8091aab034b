"""Addresses of the dashboard's pages for a session, a user or a filtered list: one place that
quotes the values (ids are sender-chosen text: a slash, a `?` or a `#` must stay part of the id)."""

from __future__ import annotations

from urllib.parse import quote, urlencode

# A link is a GET address, held to the server's request-line limit: ids and names longer than
# this are shown as text (the API's filters take them; its request body is the place for them).
MAX_LINKED_TEXT = 1024


def filterable(value: str) -> bool:
    """Whether a link can narrow the list to this value: not empty (that is no filter: every
    call), and no longer than a link carries (MAX_LINKED_TEXT). Otherwise the value is shown
    as text, without a link."""
    return 0 < len(value) <= MAX_LINKED_TEXT


def _too_long(*values: str) -> bool:
    return any(len(v) > MAX_LINKED_TEXT for v in values)


def session_page(session_id: str, page: int | None = None) -> str:
    """A session's page. An id of "." or ".." cannot be a path segment (a browser resolves it,
    percent-encoded or not, to the parent page), nor one with a line feed (the router's path
    patterns stop at one): such ids are sent as a query parameter."""
    if _too_long(session_id):
        return ""
    if session_id in (".", "..") or "\n" in session_id:
        query = {"id": session_id} if page is None else {"id": session_id, "page": page}
        return "/ui/sessions?" + urlencode(query)
    address = "/ui/sessions/" + quote(session_id, safe="")
    return address if page is None else f"{address}?page={page}"


def user_page(user_id: str, range_name: str = "all") -> str:
    """The user's sessions and totals ("" if the id is longer than a link carries)."""
    if _too_long(user_id):
        return ""
    return "/ui/users/sessions?" + urlencode({"user": user_id, "range": range_name})


def inferences(range_name: str = "all", **filters: str) -> str:
    """The Inferences page narrowed to these filters (URL names: user, session, model …), or ""
    if one is longer than a link carries."""
    # A tag filter is "key=value": each part is held to the limit on its own.
    parts = [p for name, v in filters.items() for p in (v.split("=", 1) if name == "tag" else [v])]
    if _too_long(*parts):
        return ""
    return "/ui/inferences?" + urlencode({"range": range_name, **filters})
