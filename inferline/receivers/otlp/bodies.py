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
    """gzip / deflate / zstd with the output capped at `limit`, so a small bomb cannot grow. Every
    member (gzip) or frame (zstd) of the body is read, as the format allows several back to back;
    a body that ends inside one is refused, never read as whatever came before the cut."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _inflate(body, encoding, limit)
    if encoding == "zstd":
        return _unzstd(body, limit)
    raise UnsupportedEncoding(f"Content-Encoding {encoding!r} is not supported (use gzip, zstd or none)")


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    out = bytearray()
    data = body
    while True:
        d = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
        try:
            # At most one byte past the limit (never 0, which would mean no limit).
            out += d.decompress(data, limit + 1 - len(out))
        except zlib.error as e:
            raise ValueError(f"invalid {encoding} body: {e}") from None
        if len(out) > limit or d.unconsumed_tail:
            raise BodyTooLarge(f"decompressed body exceeds {limit} bytes")
        if not d.eof:
            raise ValueError(f"invalid {encoding} body: it ends inside the compressed data (truncated?)")
        data = d.unused_data
        if not data:
            return bytes(out)


def _unzstd(body: bytes, limit: int) -> bytes:
    import zstandard

    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body), read_across_frames=True)
        out = reader.read(limit + 1)
        if len(out) > limit:
            raise BodyTooLarge(f"decompressed body exceeds {limit} bytes")
        # The reader takes a body cut inside a frame as ended: each frame must be whole. (Its
        # output is known to be within the limit now, so decompressing it again is bounded.)
        data = body
        while data:
            frame = zstandard.ZstdDecompressor().decompressobj()
            frame.decompress(data)
            if not frame.eof:
                raise ValueError("invalid zstd body: it ends inside a frame (truncated?)")
            data = frame.unused_data
    except zstandard.ZstdError as e:
        raise ValueError(f"invalid zstd body: {e}") from None
    return out
