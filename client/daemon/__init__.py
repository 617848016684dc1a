"""A client of the Docker Engine API as `dockyardd` (or dockerd) serves it on a Unix socket.

`DaemonClient` (api.py) has one method per endpoint; `UnixTransport` (transport.py) is the only
part that knows the socket. The `dockyard` CLI's container commands are built on it; tests and
users can import it. It never imports the engine.
"""

from .api import DaemonClient, demux
from .transport import DEFAULT_HOST, DaemonError, DaemonUnavailable

__all__ = ["DEFAULT_HOST", "DaemonClient", "DaemonError", "DaemonUnavailable", "demux"]
