"""Errors every stage understands: the receivers map them to OTLP's retryable statuses."""


class Retryable(Exception):
    """Nothing of the request was acknowledged; the sender should send it again later.

    `reason` is the `reason` label of `inferline_requests_refused_total`; `grpc_code` the name of
    the gRPC status (both OTLP exporters retry UNAVAILABLE and, with RetryInfo, RESOURCE_EXHAUSTED).
    """

    retry_after_s = 1
    http_status = 503
    grpc_code = "UNAVAILABLE"
    reason = "unavailable"

    def __init__(self, message: str = "", *, reason: str | None = None, retry_after_s: int | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s


class Overloaded(Retryable):
    """Too much is waiting for the durable point; refusing instead of queueing without bound."""

    retry_after_s = 1
    http_status = 429
    reason = "pending_rows"


class Unavailable(Retryable):
    """The durable point (ClickHouse, Kafka) did not take the data."""

    retry_after_s = 5
    http_status = 503


class MemoryPressure(Retryable):
    """The process is past its memory ceiling: new requests wait until it comes down."""

    retry_after_s = 2
    http_status = 503
    reason = "memory"


class RateLimited(Retryable):
    """The project sent more than its configured rate; `retry_after_s` says when it fits again."""

    http_status = 429
    grpc_code = "RESOURCE_EXHAUSTED"
    reason = "rate_limit"


class ConfigError(ValueError):
    """The configuration cannot work (an unknown processor, a missing key source): said at start."""
