"""Errors every stage understands: the receivers map them to OTLP's retryable statuses."""


class Retryable(Exception):
    """Nothing of the request was acknowledged; the sender should send it again later."""

    retry_after_s = 1
    http_status = 503


class Overloaded(Retryable):
    """Too much is waiting for the durable point; refusing instead of queueing without bound."""

    retry_after_s = 1
    http_status = 429


class Unavailable(Retryable):
    """The durable point (ClickHouse, Kafka) did not take the data."""

    retry_after_s = 5
    http_status = 503


class ConfigError(ValueError):
    """The configuration cannot work (an unknown processor, a missing key source): said at start."""
