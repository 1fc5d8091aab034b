"""Where a message keyed by `key` goes in a topic of `partitions` partitions under Kafka's default
partitioner (the Java client's, and aiokafka's): murmur2 of the key, made positive, modulo the
partition count. The receiver places every trace of every request by it (~100 a request of 200
spans); aiokafka's murmur2 is pure Python, ~5 µs a key: this module is compiled with the hot path
(tools/compile_hot_path.py), ~2.5 µs a key."""

from __future__ import annotations

from typing import Final

_SEED: Final = 0x9747B28C
_M: Final = 0x5BD1E995  # the mixing constant of MurmurHash2
_MASK: Final = 0xFFFFFFFF  # the Java original works on 32-bit ints


def murmur2(data: bytes) -> int:
    """MurmurHash2 (32 bits, seed 0x9747b28c) as the Kafka clients compute it, unsigned."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    end = length - length % 4
    for i in range(0, end, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length - end
    if tail >= 3:
        h ^= data[end + 2] << 16
    if tail >= 2:
        h ^= data[end + 1] << 8
    if tail >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_of(key: bytes, partitions: int) -> int:
    """The index (0 .. partitions - 1, in partition id order) a message keyed by `key` goes to."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
