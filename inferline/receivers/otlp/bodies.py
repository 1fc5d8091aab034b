"""Reading request bodies within a size limit, before and after decompression."""

from __future__ import annotations

import io
import zlib
from collections.abc import AsyncIterator


class BodyTooLarge(Exception):
    pass


class UnsupportedEncoding(Exception):
    pass


async def read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """Reads a (possibly chunked) body, giving up as soon as it passes `limit` bytes."""
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body exceeds {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """gzip / deflate / zstd with the output capped at `limit`, so a small bomb cannot grow."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip", "deflate"):
        d = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
        try:
            out = d.decompress(body, limit + 1)
        except zlib.error as e:
            raise ValueError(f"invalid {encoding} body: {e}") from None
        if len(out) > limit or d.unconsumed_tail:
            raise BodyTooLarge(f"decompressed body exceeds {limit} bytes")
        return out
    if encoding == "zstd":
        import zstandard

        try:
            out = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body)).read(limit + 1)
        except zstandard.ZstdError as e:
            raise ValueError(f"invalid zstd body: {e}") from None
        if len(out) > limit:
            raise BodyTooLarge(f"decompressed body exceeds {limit} bytes")
        return out
    raise UnsupportedEncoding(f"Content-Encoding {encoding!r} is not supported (use gzip, zstd or none)")
