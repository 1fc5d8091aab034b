"""Who may read /metrics: Prometheus with the metrics token, or an operator with the admin key.

The page names every project and key id in its labels and counts each project's traffic, so it is
not public: a project's API key does not open it either. The health probes stay open (they say
only "ok" or "ready")."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

import structlog
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response

from inferline.storage.keys import key_from_headers, write_owner_only

METRICS_TOKEN_FILE = "metrics_token"
log = structlog.get_logger()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class MetricsAccess:
    """The SHA-256 digests of the bearer tokens /metrics accepts; none: /metrics is closed."""

    digests: tuple[str, ...]

    @classmethod
    def of(cls, *tokens: str) -> MetricsAccess:
        # Stripped as a sent one is (a token read from a secret file often ends with a newline).
        stripped = (t.strip() for t in tokens)
        return cls(tuple(_digest(t) for t in stripped if t))

    def allows(self, headers: Headers) -> bool:
        token = key_from_headers(headers)
        if not token:
            return False
        digest = _digest(token)
        # Every digest is compared, so the time taken does not tell which one came close.
        return sum(hmac.compare_digest(digest, d) for d in self.digests) > 0

    def refusal(self) -> Response:
        if self.digests:
            detail = "/metrics needs `Authorization: Bearer <metrics token>` (INFERLINE_METRICS_TOKEN)"
        else:
            detail = "/metrics is closed: set INFERLINE_METRICS_TOKEN (or INFERLINE_ADMIN_KEY) to read it"
        return JSONResponse(
            {"detail": detail}, status_code=401, headers={"www-authenticate": 'Bearer realm="metrics"'}
        )


def ensure_metrics_token(data_dir: Path) -> str:
    """The embedded service's token when none is configured: made on the first start and kept in
    the data directory, readable by the owner only, so Prometheus can be pointed at the file."""
    path = data_dir / METRICS_TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    if token:
        return token
    token = "ilm_" + secrets.token_urlsafe(32)
    write_owner_only(path, token + "\n")
    # The path, never the token: an existing Prometheus needs it from now on.
    log.info("made a metrics token: /metrics takes it as a bearer token", path=str(path))
    return token
