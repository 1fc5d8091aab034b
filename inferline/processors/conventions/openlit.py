"""OpenLIT: flat-text content, TTFT in seconds as a span attribute, cost on the span."""

from __future__ import annotations

from typing import Any, Final

from inferline.processors.conventions.messages import Message, norm_role

# The roles OpenLIT's `format_content` writes as `role: content` line prefixes.
_ROLE_PREFIXES: Final = (
    "system",
    "user",
    "assistant",
    "tool",
    "developer",
    "human",
    "ai",
    "function",
    "model",
)

TTFT_S: Final = "gen_ai.server.time_to_first_token"


def is_openlit(a: dict[str, Any], resource: dict[str, Any], scope_name: str) -> bool:
    return (
        scope_name.startswith("openlit")
        or a.get("telemetry.sdk.name") == "openlit"
        or resource.get("telemetry.sdk.name") == "openlit"
    )


def _split_role(line: str) -> tuple[str, str] | None:
    colon = line.find(": ")
    if 0 < colon <= 10:
        head = line[:colon].strip().lower()
        if head in _ROLE_PREFIXES:
            return norm_role(head), line[colon + 2 :]
    return None


def parse_flat_prompt(text: str) -> list[Message]:
    """Best effort over `"user: Hi\\nassistant: Hello"`; text without role prefixes is one user message."""
    out: list[Message] = []
    for line in text.split("\n"):
        hit = _split_role(line)
        if hit is not None:
            out.append({"role": hit[0], "content": hit[1]})
        elif out:
            out[-1]["content"] += "\n" + line
        else:
            out.append({"role": "user", "content": line})
    return out
