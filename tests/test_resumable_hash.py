"""`ocispec.resumable_hash`: the same digests as hashlib, through any save and resume."""

from __future__ import annotations

import hashlib
import random

import pytest

from ocispec.resumable_hash import ResumableHash, StateRefused, available


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_digests_match_hashlib_across_saves_at_every_block_boundary_and_between(algorithm):
    assert available(algorithm), "libcrypto's SHA256_*/SHA512_* are on every machine Dockyard targets"
    rng = random.Random(7)
    running, expected = ResumableHash(algorithm), hashlib.new(algorithm)
    for size in [0, 1, 55, 56, 63, 64, 65, 111, 112, 127, 128, 129, 1000, 4096, 1_048_576 + 3, *[rng.randrange(1, 300_000) for _ in range(20)]]:
        piece = rng.randbytes(size)
        running.update(piece)
        expected.update(piece)
        assert running.hexdigest() == expected.hexdigest(), size
        running = ResumableHash.resume(running.state())  # as another process would
    assert running.name == algorithm
    assert running.digest() == expected.digest()


def test_a_copy_and_a_digest_leave_the_original_running():
    original = ResumableHash("sha256")
    original.update(b"abc")
    copied = original.copy()
    copied.update(b"def")
    assert original.hexdigest() == hashlib.sha256(b"abc").hexdigest()
    assert original.hexdigest() == hashlib.sha256(b"abc").hexdigest(), "hexdigest does not end the hash"
    assert copied.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()
    original.update(memoryview(b"de"))
    assert original.hexdigest() == hashlib.sha256(b"abcde").hexdigest()


def test_states_of_another_format_size_or_algorithm_are_refused():
    state = ResumableHash("sha256").state()
    header, _, context = state.partition(b"\n")
    for bad in [
        b"",
        b"garbage",
        b"openssl-ctx-v1 sha256 112",  # no newline, no context
        state[:-1],  # short context
        header.replace(b"sha256", b"md5") + b"\n" + context,
        header.replace(b"v1", b"v2") + b"\n" + context,
        header.replace(b"112", b"216") + b"\n" + context,
        header + b"\n" + context[:-4] + (64).to_bytes(4, "little"),  # a SHA-512 digest length in a SHA-256 state
    ]:
        with pytest.raises(StateRefused):
            ResumableHash.resume(bad)
