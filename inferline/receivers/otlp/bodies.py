"""Reading request bodies within a size limit, before and after decompression."""

from __future__ import annotations

import asyncio
import io
import zlib
from collections.abc import AsyncIterator, Callable


class BodyTooLarge(Exception):
    pass


class UnsupportedEncoding(Exception):
    pass


class BodyStalled(Exception):
    pass


async def read_limited(
    chunks: AsyncIterator[bytes],
    limit: int,
    *,
    take: Callable[[int], None] | None = None,
    idle_timeout_s: float | None = None,
) -> bytes:
    """Reads a (possibly chunked) body, giving up as soon as it passes `limit` bytes, or when no
    part of it arrives for `idle_timeout_s` (a sender that declared a body and stopped must not
    hold the receiver's budget for good). `take(n)` is called for every `n` bytes as they arrive
    (the in-flight budget: bytes held, not bytes announced)."""
    parts, size = [], 0
    it = chunks.__aiter__()
    while True:
        try:
            async with asyncio.timeout(idle_timeout_s):
                chunk = await anext(it)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise BodyStalled(
                f"no part of the request body arrived for {idle_timeout_s:g} s ({size} bytes read)"
            ) from None
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body exceeds {limit} bytes")
        if take is not None and chunk:
            take(len(chunk))
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


# Compressed input is fed in slices (a member's leftover is then at most one slice, not the rest
# of the body: copying the rest after each of many tiny members took minutes for a 16 MiB body),
# and a body may hold at most this many members or frames.
_SLICE = 64 * 1024
MAX_MEMBERS = 64


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    out = bytearray()
    view = memoryview(body)
    pos = members = 0
    while pos < len(body):
        if body[pos] == 0 and body.count(0, pos) == len(body) - pos:
            break  # zero padding after the last member, which gzip(1) ignores too
        members += 1
        if members > MAX_MEMBERS:
            raise ValueError(f"invalid {encoding} body: more than {MAX_MEMBERS} compressed members")
        d = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
        while not d.eof:
            if pos >= len(body):
                raise ValueError(f"invalid {encoding} body: it ends inside the compressed data (truncated?)")
            piece = view[pos : pos + _SLICE]
            try:
                # At most one byte past the limit (never 0, which would mean no limit).
                out += d.decompress(piece, limit + 1 - len(out))
            except zlib.error as e:
                raise ValueError(f"invalid {encoding} body: {e}") from None
            if len(out) > limit or d.unconsumed_tail:
                raise BodyTooLarge(f"decompressed body exceeds {limit} bytes")
            pos += len(piece) - len(d.unused_data)  # the next member's start, once at the end
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
        view = memoryview(body)
        pos = frames = 0
        while pos < len(body):
            frames += 1
            if frames > MAX_MEMBERS:
                raise ValueError(f"invalid zstd body: more than {MAX_MEMBERS} frames")
            frame = zstandard.ZstdDecompressor().decompressobj()
            while not frame.eof:
                if pos >= len(body):
                    raise ValueError("invalid zstd body: it ends inside a frame (truncated?)")
                piece = view[pos : pos + _SLICE]
                frame.decompress(piece)
                pos += len(piece) - len(frame.unused_data)
    except zstandard.ZstdError as e:
        raise ValueError(f"invalid zstd body: {e}") from None
    return out
