"""Who and what a model call belongs to: user, session, tenant, service, environment, agent; and the
free-form metadata kept as tags (dict) and labels (list)."""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from inferline.processors.conventions import langfuse, vercel_ai
from inferline.processors.conventions.field_sources import (
    CONVERSATION,
    ENVIRONMENT,
    LABELS,
    SERVICE,
    Chains,
    first_id,
    first_str,
    meta_str,
)
from inferline.processors.conventions.key_scan import Tagged
from inferline.processors.conventions.values import as_str_list, tag_value

_META_TENANT_KEYS: Final = ("tenant_id", "tenantId", "tenant.id", "tenant")
_META_USER: Final = ("user_id", "userId", "langfuse_user_id")
_META_SESSION: Final = ("session_id", "sessionId", "langfuse_session_id", "thread_id", "conversation_id")
_LANGFUSE_TAGGED: Final = (langfuse.TRACE_METADATA_PREFIX, langfuse.OBSERVATION_METADATA_PREFIX)
# NamedTuples built per model call without their generated Python `__new__` (see normalise._record)
_record = tuple.__new__


class Attribution(NamedTuple):
    """Who and what a call belongs to, "" where unknown."""

    user_id: str
    session_id: str
    tenant_id: str
    service_name: str
    environment: str
    agent_name: str
    agent_id: str
    # (user, session, tenant) named by the span itself and by its resource: an ancestor span's
    # values come between the two (`ancestry`)
    own_ids: tuple[str, str, str]
    resource_ids: tuple[str, str, str]


_RESOURCE_USER: Final = ("user.id", "enduser.id")
_RESOURCE_SESSION: Final = ("session.id",)
# Every attribute that can name a user, session or tenant on a span (the tenant keys are added per
# normaliser): a span without any of them passes nothing on to its descendants.
_ALL_CHAINS: Final = Chains(None, ())
ID_KEYS: Final = frozenset(
    (
        *_ALL_CHAINS.user,
        *_ALL_CHAINS.session,
        *CONVERSATION,
        "metadata",  # OpenInference: a JSON document that may name them
        *LABELS,
    )
)


def span_ids(a: dict[str, Any], ch: Chains, metas: tuple[dict[str, Any] | None, ...]) -> tuple[str, str, str]:
    """(user, session, tenant) the span names (attributes, then free-form metadata documents). The OTel
    `gen_ai.conversation.id` is the session only when no session attribute or metadata names one."""
    user_id = first_id(a, ch.user) or meta_str(metas, _META_USER)
    session_id = first_id(a, ch.session) or meta_str(metas, _META_SESSION) or first_str(a, ch.conversation)
    tenant_id = first_id(a, ch.tenant) or meta_str(metas, _META_TENANT_KEYS)
    return user_id or "", session_id or "", tenant_id or ""


class ResourceFacts(NamedTuple):
    """What a resource's attributes say for attribution, "" where nothing. The spans of one OTLP
    resource share its attribute dict: read once per resource (and batch), not per span."""

    ids: tuple[str, str, str]  # (user, session, tenant)
    service_name: str
    environment: str


def resource_facts(res: dict[str, Any], tenant_keys: tuple[str, ...]) -> ResourceFacts:
    return ResourceFacts(
        (
            first_id(res, _RESOURCE_USER) or "",
            first_id(res, _RESOURCE_SESSION) or "",
            first_id(res, tenant_keys) or "",
        ),
        first_str(res, SERVICE) or "",
        first_id(res, ENVIRONMENT) or "",
    )


def attribution(
    a: dict[str, Any],
    res: ResourceFacts,
    ch: Chains,
    metas: tuple[dict[str, Any] | None, ...],
) -> Attribution:
    """Span attributes first, then free-form metadata documents, then resource attributes (the
    service name: resource first)."""
    own = span_ids(a, ch, metas)
    resource = res.ids
    return _record(
        Attribution,
        (
            own[0] or resource[0],
            own[1] or resource[1],
            own[2] or resource[2],
            res.service_name or first_str(a, ch.service) or "",
            first_id(a, ch.environment) or res.environment,
            first_str(a, ch.agent) or "",
            first_str(a, ch.agent_id) or "",
            own,
            resource,
        ),
    )


class RowMetadata(NamedTuple):
    """Free-form metadata: string tags by key, and list-style labels."""

    tags: dict[str, str]
    labels: list[str]


def metadata(
    a: dict[str, Any],
    ch: Chains,
    tagged: Tagged,
    oi_meta: dict[str, Any] | None,
    lf_meta: dict[str, Any] | None,
    is_langfuse: bool,
    adjusted: dict[str, str],
) -> RowMetadata:
    """Free metadata as string tags (a later source overwrites an earlier one's key), and list-style
    tags as labels (first occurrence kept). `adjusted`: the tags of token counts made inclusive."""
    tags: dict[str, str] = dict(adjusted)
    if oi_meta:
        for k, v in oi_meta.items():
            tags[k] = tag_value(v)
    if lf_meta:
        for k, v in lf_meta.items():
            tags[k] = tag_value(v)
    for p, k, v in tagged:
        if p == vercel_ai.METADATA_PREFIX and k == "tags":
            continue  # list-style, goes to labels
        tags[k] = tag_value(langfuse.meta_value(v) if p in _LANGFUSE_TAGGED else v)
    for k in ch.kept_as_tags:
        v = a.get(k)
        if v is not None:
            tags[k] = tag_value(v)
    labels: list[str] = []
    # Plain loops: each label is checked against those appended before it, the same label twice
    # in one list included (mypyc builds a generator given to `extend` as a whole list first).
    if is_langfuse:
        for x in as_str_list(langfuse.tags(a)):
            if x not in labels:
                labels.append(x)
    for k in ch.labels:
        v = a.get(k)
        if v is not None:
            for x in as_str_list(v):
                if x not in labels:
                    labels.append(x)
    return _record(RowMetadata, (tags, labels))
