"""SHA-256 and SHA-512 whose running state can be saved and resumed in another process.

A chunked upload's PATCHes reach whichever worker process or replica the connection lands
on. hashlib cannot export a hash's state, so without this the process completing the upload
re-reads every byte to check the digest. distribution keeps the same thing in storage
(`hashstates/<algorithm>/<offset>`), from Go's marshalable hashes.

OpenSSL's low-level `SHA256_*`/`SHA512_*` functions work on a plain C struct the caller owns
(`SHA256_CTX`, `SHA512_CTX`; their layout has not changed since OpenSSL 0.9.8, and OpenSSL 3
still exports them), so the struct's bytes are the state. They are called through ctypes,
which releases the GIL for the call, as hashlib does for large inputs. A saved state carries
its format name and size and is refused when they do not match this machine's library, and
`available()` is False where libcrypto or those functions are missing: callers then hash in
process only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
from dataclasses import dataclass
from typing import Any

FORMAT = "openssl-ctx-v1"


@dataclass(frozen=True)
class _Algorithm:
    name: str
    context_size: int  # sizeof(SHA256_CTX) / sizeof(SHA512_CTX) on LP64 and ILP32 alike
    digest_size: int
    prefix: str  # SHA256 -> SHA256_Init, SHA256_Update, SHA256_Final


_ALGORITHMS = {
    "sha256": _Algorithm("sha256", 112, 32, "SHA256"),  # h[8], Nl, Nh, data[16] (32-bit), num, md_len
    "sha512": _Algorithm("sha512", 216, 64, "SHA512"),  # h[8], Nl, Nh (64-bit), u.d[16] (64-bit), num, md_len
}


def _load() -> dict[str, tuple[Any, Any, Any]]:
    name = ctypes.util.find_library("crypto")
    if name is None:
        return {}
    try:
        library = ctypes.CDLL(name)
        functions = {}
        for algorithm in _ALGORITHMS.values():
            init, update, final = (getattr(library, f"{algorithm.prefix}_{step}") for step in ("Init", "Update", "Final"))
            init.argtypes, update.argtypes, final.argtypes = (
                [ctypes.c_void_p],
                [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t],
                [ctypes.c_char_p, ctypes.c_void_p],
            )
            init.restype = update.restype = final.restype = ctypes.c_int
            functions[algorithm.name] = (init, update, final)
        return functions
    except (OSError, AttributeError):
        return {}


_FUNCTIONS = _load()


def available(algorithm: str) -> bool:
    return algorithm in _FUNCTIONS


class StateRefused(ValueError):
    """A saved state this machine cannot resume (another format, algorithm or struct size)."""


class ResumableHash:
    """hashlib-like (`update`, `copy`, `hexdigest`, `name`) with `state()` / `resume()`."""

    def __init__(self, algorithm: str, _context: ctypes.Array[ctypes.c_char] | None = None) -> None:
        if algorithm not in _FUNCTIONS:
            raise ValueError(f"no resumable {algorithm} on this machine")
        self.name = algorithm
        self._spec = _ALGORITHMS[algorithm]
        self._init, self._update, self._final = _FUNCTIONS[algorithm]
        if _context is None:
            _context = ctypes.create_string_buffer(self._spec.context_size)
            if self._init(_context) != 1:
                raise RuntimeError(f"{self._spec.prefix}_Init failed")
        self._context = _context

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, bytes):
            data = bytes(data)
        if self._update(self._context, data, len(data)) != 1:
            raise RuntimeError(f"{self._spec.prefix}_Update failed")

    def copy(self) -> ResumableHash:
        return ResumableHash(self.name, ctypes.create_string_buffer(self._context.raw, self._spec.context_size))

    def digest(self) -> bytes:
        """The digest of what was fed so far; this hash can go on being fed (Final runs on a copy)."""
        out = ctypes.create_string_buffer(self._spec.digest_size)
        if self._final(out, self.copy()._context) != 1:
            raise RuntimeError(f"{self._spec.prefix}_Final failed")
        return out.raw

    def hexdigest(self) -> str:
        return self.digest().hex()

    def state(self) -> bytes:
        """The running state, to `resume` in any process on a machine with the same library."""
        header = f"{FORMAT} {self.name} {self._spec.context_size}\n".encode()
        return header + self._context.raw

    @classmethod
    def resume(cls, saved: bytes) -> ResumableHash:
        header, newline, context = saved.partition(b"\n")
        try:
            format_name, algorithm, size_text = header.decode().split(" ")
            size = int(size_text)
        except ValueError:
            raise StateRefused("not a saved hash state") from None
        spec = _ALGORITHMS.get(algorithm)
        if not newline or format_name != FORMAT or spec is None or size != spec.context_size or len(context) != size:
            raise StateRefused(f"a hash state {header!r} of {len(context)} bytes is not one this machine resumes")
        if not available(algorithm):
            raise StateRefused(f"no resumable {algorithm} on this machine")
        (md_len,) = struct.unpack_from("=I", context, size - 4)  # the struct's last field
        if md_len != spec.digest_size:
            raise StateRefused(f"the saved {algorithm} state's digest length is {md_len}, not {spec.digest_size}")
        return cls(algorithm, ctypes.create_string_buffer(context, size))
