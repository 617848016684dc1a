"""The engine's typed errors, each carrying the HTTP status the Engine API answers with.

Messages are Docker's wording where a client or a user depends on it ("No such container: x",
"Conflict. The container name ... is already in use"), since the docker CLI prints them as
`Error response from daemon: <message>` and decides its exit status from their text.
"""

from __future__ import annotations


class EngineError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameter(EngineError):
    status = 400


class NotFound(EngineError):
    status = 404


class NoSuchContainer(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"No such container: {ref}")


class NoSuchExec(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"No such exec instance: {ref}")


class Conflict(EngineError):
    status = 409


class NotModified(EngineError):
    """304: start of a running container, stop of a stopped one."""

    status = 304


class RuntimeFailure(EngineError):
    """runc refused: the message is runc's (the CLI maps "executable file not found" to 127)."""

    status = 500
