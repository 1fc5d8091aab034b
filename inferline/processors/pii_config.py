"""Settings of the PII processor (`processors.pii` in the service's configuration): pydantic at
the edge, apart from the masker's hot path (compiled with mypyc, which does not compile pydantic
models)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inferline.processors.pii_detectors import BUILTIN_DETECTORS


class CustomPattern(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", description="PII type; placeholder is <NAME>")
    regex: str = Field(description="Python regex, ASCII semantics for \\w \\d \\b")
    ignore_case: bool = False

    @field_validator("name")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"invalid regex {v!r}: {e}") from e
        return v


class PiiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # dict: per-detector on/off over the defaults (all on); list: exactly these detectors on.
    detectors: dict[str, bool] | list[str] | None = None
    mode: Literal["placeholder", "hash", "drop"] = "placeholder"
    hash_key: str = Field("", repr=False, description="HMAC key for mode=hash; keep it secret")
    hash_chars: int = Field(8, ge=4, le=64, description="hex chars of the HMAC kept in the token")
    custom_patterns: list[CustomPattern] = Field(default_factory=list)
    allow_list: list[str] = Field(default_factory=list, description="exact values never masked")
    # Every string value of span, event, link, resource and log attributes is scanned, except the
    # keys of `never_mask` (and of DEFAULT_NEVER_MASK). False: only `attributes` and the GenAI
    # content keys of DEFAULT_ATTRIBUTES (the behaviour before every value was masked).
    mask_all_attributes: bool = True
    never_mask: list[str] = Field(
        default_factory=list, description="attribute keys or fnmatch globs never masked"
    )
    include_default_never_mask: bool = True
    attributes: list[str] = Field(
        default_factory=list,
        description="attribute keys or fnmatch globs always masked, even when also in never_mask",
    )
    include_default_attributes: bool = True
    inference_fields: list[str] = Field(
        # Every column with text a sender wrote: the messages, and what the normaliser copied from
        # attributes the spans' own copies of are masked in (tags feed the rollups' `feature`).
        default_factory=lambda: [
            "prompt_messages",
            "response_messages",
            "status_message",
            "labels",
            "tags",
            "request_parameters",
            "agent_name",
            "server_address",
        ]
    )
    mask_log_body: bool = True

    @field_validator("detectors")
    @classmethod
    def _known_detectors(cls, v: dict[str, bool] | list[str] | None) -> dict[str, bool] | list[str] | None:
        if v is None:
            return v
        names = list(v)
        unknown = [n for n in names if n.upper() not in BUILTIN_DETECTORS]
        if unknown:
            raise ValueError(f"unknown detectors {unknown} (known: {', '.join(BUILTIN_DETECTORS)})")
        if isinstance(v, dict):
            return {k.upper(): b for k, b in v.items()}
        return [n.upper() for n in v]

    @model_validator(mode="after")
    def _hash_needs_key(self) -> PiiConfig:
        # An unkeyed hash of a phone number is reversible by enumeration; refuse rather than leak.
        if self.mode == "hash" and not self.hash_key:
            raise ValueError("processors.pii.hash_key is required when mode is 'hash'")
        return self

    def enabled_detectors(self) -> list[str]:
        if self.detectors is None:
            return list(BUILTIN_DETECTORS)
        if isinstance(self.detectors, dict):
            return [d for d in BUILTIN_DETECTORS if self.detectors.get(d, True)]
        return [d for d in BUILTIN_DETECTORS if d in self.detectors]
