"""No API key and no prompt content in the service's logs, even at debug level and on errors."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import make_service
from tests.otlp_helpers import GENAI_ATTRIBUTES, json_span, logs_json, traces_json

pytestmark = pytest.mark.e2e


def test_logs_carry_no_keys_and_no_content(tmp_path: Path) -> None:
    service = make_service(tmp_path, INFERLINE_LOG_LEVEL="debug")
    service.start()
    try:
        span = json_span(dict(GENAI_ATTRIBUTES, **{"gen_ai.usage.cost": "bogus"}))
        headers = {"x-api-key": service.key, "content-type": "application/json"}
        content_log = {
            "traceId": span["traceId"],
            "spanId": span["spanId"],
            "body": "secret prompt jane@example.com",
        }
        for path, body, key in (
            ("/v1/traces", traces_json([span]), service.key),
            ("/v1/logs", logs_json([content_log]), service.key),
            ("/v1/traces", b'{"resourceSpans": "not an array"}', service.key),
            ("/v1/traces", b"{}", "il_wrong_key_value"),
        ):
            httpx.post(f"{service.http_url}{path}", content=body, headers={**headers, "x-api-key": key})
        httpx.post(
            f"{service.api_url}/",
            content="SELECT 'jane@example.com' FROM no_such_table",
            headers={"Authorization": f"Bearer {service.key}"},
        )
    finally:
        assert service.stop() == 0
    logs = service.logs()
    assert logs.strip(), "the service logged nothing at all"
    for secret in (
        service.key,
        "il_wrong_key_value",
        "capital of France",
        "jane@example.com",
        "secret prompt",
    ):
        assert secret not in logs, f"{secret[:12]}… appears in the logs"
