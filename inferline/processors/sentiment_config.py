"""Settings of the sentiment processor (`processors.sentiment` in the service's configuration):
pydantic at the edge, apart from the scorer's hot path (compiled with mypyc, which does not
compile pydantic models)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ScoredField = Literal["prompt", "response"]


def _both_fields() -> list[ScoredField]:
    return ["prompt", "response"]


class SentimentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # Feedback comments (and any text the scorer is given) are scored whole up to max_chars;
    # longer ones on their first and last max_chars/2.
    max_chars: int = Field(
        300,
        ge=32,
        le=100_000,
        description="feedback comments longer than this are scored on their first and last max_chars/2",
    )
    fields: list[ScoredField] = Field(
        default_factory=_both_fields,
        description="prompt = the last user message; response = the assistant response text",
    )
    # The user's tone is in the opening and the closing of their message ("Thanks! ... still
    # broken"); what lies between is mostly pasted content (code, documents, logs).
    prompt_chars: int = Field(
        120,
        ge=32,
        le=100_000,
        description="the last user message is scored on its first and last prompt_chars/2 characters",
    )
    response_head_chars: int = Field(
        80,
        ge=0,
        le=100_000,
        description="the response is scored on its first this-many characters (0: head + tail, as prompts)",
    )
    domain_rules: bool = Field(
        True, description="domain words, phrases, other languages, sarcasm, requests; false: plain VADER"
    )
