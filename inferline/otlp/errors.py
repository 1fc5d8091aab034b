class OtlpDecodeError(ValueError):
    """The payload is not valid OTLP; the message says where and why (HTTP 400 / INVALID_ARGUMENT)."""
