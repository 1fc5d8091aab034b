"""The web dashboard: server-rendered pages (Jinja2 templates, htmx) on the API port under /ui/.

A browser signs in with a project's API key and gets a session cookie; every page reads through
the product API's own functions (inferline.api), with a `Caller` made from the session, so a
session sees exactly what its key sees through the API.
"""
