"""Reading OTLP/HTTP bodies: every member of a compressed body, within the size limit, and within
bounded work whatever the body's shape."""

from __future__ import annotations

import gzip
import random
import zlib

import pytest
import zstandard

from inferline.receivers.otlp.bodies import MAX_MEMBERS, BodyTooLarge, decompress

pytestmark = pytest.mark.unit

LIMIT = 1 << 20


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_members_back_to_back_are_read_and_a_cut_one_is_refused(encoding: str) -> None:
    compress = gzip.compress if encoding == "gzip" else zstandard.ZstdCompressor().compress
    body = compress(b"first ") + compress(b"second")
    assert decompress(body, encoding, LIMIT) == b"first second"
    with pytest.raises(ValueError, match="truncated"):
        decompress(body[:-4], encoding, LIMIT)


def test_a_member_larger_than_a_slice_is_read_whole() -> None:
    data = random.Random(1).randbytes(300_000)  # incompressible: ~300 KB compressed, 5 slices
    for encoding, body in (
        ("gzip", gzip.compress(data)),
        ("zstd", zstandard.ZstdCompressor().compress(data)),
    ):
        assert len(body) > 256 * 1024
        assert decompress(body + body, encoding, LIMIT) == data + data
        with pytest.raises(ValueError, match="truncated"):
            decompress(body[:-100], encoding, LIMIT)


def test_what_gzip_itself_accepts_is_accepted() -> None:
    """Zero padding after the last member (gzip(1) ignores it) and an empty body (no members: an
    empty request) were refused once members were counted."""
    assert decompress(gzip.compress(b"padded") + bytes(512), "gzip", LIMIT) == b"padded"
    assert decompress(b"", "gzip", LIMIT) == b"" == decompress(b"", "zstd", LIMIT)
    with pytest.raises(ValueError):
        decompress(gzip.compress(b"x") + b"\0\0garbage", "gzip", LIMIT)


@pytest.mark.parametrize("encoding", ["deflate", "zstd"])
def test_a_body_of_many_tiny_members_is_refused_without_reading_them_all(encoding: str) -> None:
    """A 2 MiB body of empty members made the decompressor copy the rest of the body after each:
    6.7 s on the event loop, ~400 s at the 16 MiB limit, every other request waiting."""
    empty = zlib.compress(b"") if encoding == "deflate" else zstandard.ZstdCompressor().compress(b"")
    body = empty * ((2 << 20) // len(empty))
    with pytest.raises(ValueError, match=f"more than {MAX_MEMBERS}"):
        decompress(body, encoding, 16 << 20)
    assert decompress(empty * MAX_MEMBERS, encoding, LIMIT) == b""


def test_the_limit_holds_across_members() -> None:
    half = gzip.compress(b"x" * (LIMIT // 2 + 1))
    with pytest.raises(BodyTooLarge):
        decompress(half + half, "gzip", LIMIT)
