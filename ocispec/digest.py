"""Content digests (`algorithm:encoded`) as the OCI image-spec defines them.

Only registered algorithms with a known encoding are accepted (sha256, sha512), so a `Digest`
is always safe to turn into a storage path.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# The grammar of the image-spec ("descriptor.md#digests").
DIGEST_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
ENCODED_PATTERNS = {
    "sha256": re.compile(r"^[a-f0-9]{64}$"),
    "sha512": re.compile(r"^[a-f0-9]{128}$"),
}
SUPPORTED_ALGORITHMS = tuple(ENCODED_PATTERNS)


class InvalidDigest(ValueError):
    """The text is not a digest this registry can verify."""


@dataclass(frozen=True, order=True)
class Digest:
    algorithm: str
    encoded: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        if not isinstance(text, str) or not DIGEST_GRAMMAR.match(text):
            raise InvalidDigest(f"{text!r} is not a digest of the form algorithm:hex")
        algorithm, encoded = text.split(":", 1)
        pattern = ENCODED_PATTERNS.get(algorithm)
        if pattern is None:
            raise InvalidDigest(f"digest algorithm {algorithm!r} is not supported (use sha256 or sha512)")
        if not pattern.match(encoded):
            raise InvalidDigest(f"{text!r} has a malformed {algorithm} value")
        return cls(algorithm, encoded)

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> "hashlib._Hash":
        """A fresh hash object of this digest's algorithm."""
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"

