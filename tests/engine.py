"""A real `dockyardd` for the engine tests: its own data root and socket, driven by the stock
docker CLI (`docker` on PATH, talking to `DOCKER_HOST`), docker-py and `dockyard`.

Images come from a Dockyard registry process the tests start: a busybox image (three layers,
one with a whiteout) written as an OCI layout and copied in with skopeo, then pulled through
the daemon. Nothing reaches beyond loopback.

`Daemon.stop()` removes every container (so no shim or runc process is left), then SIGTERMs the
daemon; processes it started are ended by PID only.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import RegistryProcess, start_registry, stop_process
from tests.images import BUSYBOX, GROUP, Image, LayerBuilder, app_layer, host_architecture, image_config, update_layer, write_layout

APPLETS = ("sh", "cat", "ls", "echo", "test", "true", "false", "sleep", "id", "hostname", "stty", "tty", "rm", "mkdir",
           "touch", "env", "pwd", "wc", "kill", "ps", "head", "tr", "seq", "httpd", "wget", "nc", "ip", "grep", "cut")  # fmt: skip
PASSWD = (
    b"root:x:0:0:root:/root:/bin/sh\n"
    b"app:x:1000:1000:app:/home/app:/bin/sh\n"
    b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP_WITH_MEMBERS = GROUP + b"app:x:1000:\nwheel:x:10:app\n"


def busybox_image() -> Image:
    """busybox with the applets the tests use, an `app` user, then two layers (a whiteout)."""
    builder = LayerBuilder().directory("bin").file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    for applet in APPLETS:
        builder.symlink(f"bin/{applet}", "busybox")
    base = (
        builder.directory("etc")
        .file("etc/passwd", PASSWD)
        .file("etc/group", GROUP_WITH_MEMBERS)
        .directory("root", 0o700)
        .directory("home")
        .directory("home/app")
        .directory("tmp", 0o1777)
        .build()
    )
    layers = [base, app_layer("engine"), update_layer("linux")]
    config = json.loads(image_config(layers, host_architecture(), "engine"))
    config["config"] = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]}
    return Image(config=json.dumps(config).encode(), layers=layers)


def push_busybox(registry_host: str, repository: str, workdir: Path) -> str:
    """Copy the busybox image into the registry with skopeo; its reference."""
    layout = write_layout(workdir / "busybox-layout", {"1": busybox_image()})
    reference = f"{registry_host}/{repository}:1"
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:1", f"docker://{reference}"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return reference


@dataclass
class Daemon:
    root: Path
    socket: Path
    process: subprocess.Popen[bytes]
    log: Path
    config_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    daemon_env: dict[str, str] = field(default_factory=dict)
    """The daemon's own extra environment (settings), kept across restarts."""

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKYARD_HOST": self.host, "DOCKER_CONFIG": str(self.config_dir),
                "DOCKER_CLI_HINTS": "false", **self.extra_env}  # fmt: skip

    def docker(self, *args: str, input: bytes | None = None, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
        """The stock docker CLI against this daemon."""
        result = subprocess.run(
            ["docker", *args], input=input.decode() if input is not None else None, capture_output=True, text=True,
            env=self.env, timeout=timeout, stdin=subprocess.DEVNULL if input is None else None,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def dockyard(self, *args: str, input: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`dockyard` against this daemon (stdin: `input`, bytes, e.g. a tar; else nothing)."""
        result = subprocess.run(
            [sys.executable, "-m", "client.cli", *args], input=input, capture_output=True, env=self.env, timeout=timeout,
            stdin=subprocess.DEVNULL if input is None else None,
        )  # fmt: skip
        return subprocess.CompletedProcess(
            result.args, result.returncode, result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
        )

    def container_ids(self) -> list[str]:
        return [path.name for path in (self.root / "containers").iterdir() if path.is_dir()] if (self.root / "containers").is_dir() else []

    def shim_pids(self) -> list[int]:
        pids = []
        for cid in self.container_ids():
            try:
                record = json.loads((self.root / "containers" / cid / "config.v2.json").read_text())
            except (OSError, ValueError):
                continue
            if record.get("shim_pid"):
                pids.append(int(record["shim_pid"]))
        return pids

    def kill9(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def restart(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
        self.process = _spawn(self.root, self.socket, self.log, self.daemon_env)

    def stop(self) -> None:
        if self.process.poll() is not None:
            self.process = _spawn(self.root, self.socket, self.log, self.daemon_env)
        ids = self.docker("ps", "-aq").stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, timeout=120)
        leftover = self.shim_pids()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for pid in leftover:  # shims of containers that could not be removed: ours, by PID
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        leaked = _shims_under(self.root)  # exec shims too: none may outlive its process
        for pid in leaked:
            os.kill(pid, signal.SIGKILL)
        left = subprocess.run(["runc", "--root", str(self.root / "runc"), "list", "-q"], capture_output=True, text=True).stdout
        assert not leaked and not left.split(), f"left behind: shims {leaked}, runc containers {left.split()}"
        assert not self.mounts(), f"left mounted: {self.mounts()}"
        assert not self.interfaces(), f"left behind: interfaces {self.interfaces()}"
        assert not self.nat_rules(), f"left behind: NAT rules {self.nat_rules()}"

    def nat_rules(self) -> list[str]:
        """iptables NAT rules the CNI bridge plugin made for this daemon's networks (named by network ID)."""
        ids = set()
        for record in (self.root / "networks").glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                ids.add(json.loads(record.read_text())["Id"])
        listed = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout.splitlines()
        return [rule for rule in listed if any(network_id in rule for network_id in ids)]

    def mounts(self) -> list[str]:
        """Mount points under the data root (overlays, network namespaces)."""
        with open("/proc/self/mountinfo") as mountinfo:
            return [line.split()[4] for line in mountinfo if line.split()[4].startswith(str(self.root))]

    def interfaces(self) -> list[str]:
        """This daemon's bridges (its default one, and those of networks it made) and veths on them."""
        bridge = self.daemon_env.get("DOCKYARD_BRIDGE_NAME", "dockyard0")
        found = []
        for path in Path("/sys/class/net").iterdir():
            master = path / "master"
            owner = master.resolve().name if master.exists() else ""
            if path.name == bridge or owner == bridge or path.name in self.network_bridges or owner in self.network_bridges:
                found.append(path.name)
        return found

    @property
    def network_bridges(self) -> set[str]:
        names = set()
        for record in (self.root / "networks").glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                names.add(json.loads(record.read_text()).get("bridge") or "")
        return names - {""}


def _shims_under(root: Path) -> list[int]:
    """PIDs of shim processes whose directory is under `root` (found in /proc, ours by path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"engine.shim" in argv and any(arg.startswith(str(root).encode()) for arg in argv):
            found.append(int(entry.name))
    return found


_DAEMONS_STARTED = [0]


def network_settings_env() -> dict[str, str]:
    """A bridge and subnets of its own for each daemon a test starts, so daemons never share one."""
    index = (os.getpid() + _DAEMONS_STARTED[0]) % 250
    _DAEMONS_STARTED[0] += 1
    return {"DOCKYARD_BRIDGE_NAME": f"dyt{index}", "DOCKYARD_BRIDGE_SUBNET": f"10.231.{index}.0/24",
            "DOCKYARD_NETWORK_POOL": "10.232.0.0/16"}  # fmt: skip


def _spawn(root: Path, sock: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "engine.daemon", "--host", f"unix://{sock}", "--data-root", str(root), "--log-level", "debug"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dockyardd exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(str(sock))
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise TimeoutError("dockyardd did not listen in 30 s")


@contextlib.contextmanager
def engine_world(workdir: Path, tag: str | None = None) -> Iterator[tuple[Daemon, RegistryProcess, str]]:
    """A registry process holding the busybox image, and a daemon; with `tag`, the daemon has
    pulled the image and named it so. Both are stopped (and checked for leftovers) after."""
    registry = start_registry(workdir / "registry")
    try:
        daemon = start_daemon(workdir)
        try:
            reference = push_busybox(f"127.0.0.1:{registry.port}", "base/busybox", workdir)
            if tag:
                daemon.docker("pull", reference, check=True)
                daemon.docker("tag", reference, tag, check=True)
            yield daemon, registry, reference
        finally:
            daemon.stop()
    finally:
        stop_process(registry.process)


def start_daemon(workdir: Path, env: dict[str, str] | None = None) -> Daemon:
    if os.geteuid() != 0:
        raise RuntimeError("the engine tests run containers: run them as root")
    if shutil.which("runc") is None or shutil.which("docker") is None:
        raise RuntimeError("the engine tests need runc (apt-get install runc) and the docker CLI on PATH")
    # AF_UNIX paths are short: the socket lives in a short temp dir, the data under workdir
    short = Path(tempfile.mkdtemp(prefix="dyd-"))
    root = workdir / "dockyardd-root"
    root.mkdir(parents=True, exist_ok=True)
    config_dir = workdir / "docker-config"
    config_dir.mkdir(exist_ok=True)
    log = workdir / "dockyardd.log"
    sock = short / "d.sock"
    env = {**network_settings_env(), **(env or {})}
    return Daemon(root, sock, _spawn(root, sock, log, env), log, config_dir, daemon_env=env)


class Pty:
    """A command on a real pseudo-terminal, typed into and read like a person would."""

    def __init__(self, argv: list[str], env: dict[str, str], rows: int = 24, cols: int = 80) -> None:
        import fcntl
        import pty
        import struct
        import termios

        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execvpe(argv[0], argv, env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.output = b""

    def resize(self, rows: int, cols: int) -> None:
        import fcntl
        import struct
        import termios

        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        os.kill(self.pid, signal.SIGWINCH)

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, needle: bytes, timeout: float = 20) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{needle!r} not seen; output so far: {self.output[-2000:]!r}")
            ready, _, _ = select.select([self.fd], [], [], min(remaining, 0.2))
            if ready:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    data = b""
                if not data:
                    raise AssertionError(f"{needle!r} not seen before the end; output: {self.output[-2000:]!r}")
                self.output += data
        return self.output

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    self.output += os.read(self.fd, 4096)
                except OSError:
                    pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError(f"the command did not end; output: {self.output[-2000:]!r}")


@dataclass
class ReferenceEngine:
    """Debian's dockerd (Docker 20.10), the reference engine, in its own short-lived dirs."""

    socket: Path
    process: subprocess.Popen[bytes]
    root: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_BUILDKIT": "0", "DOCKER_CLI_HINTS": "false"}

    def docker(self, *args: str, check: bool = False, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["docker", *args], capture_output=True, text=True, env=self.env, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} (dockerd) exited {result.returncode}: {result.stderr}")
        return result


@contextlib.contextmanager
def reference_engine(workdir: Path) -> Iterator[ReferenceEngine]:
    if shutil.which("dockerd") is None:
        raise RuntimeError("the reference engine tests need Debian's dockerd (apt-get install docker.io)")
    short = Path(tempfile.mkdtemp(prefix="rd-"))
    root = workdir / "dockerd"
    root.mkdir(parents=True, exist_ok=True)
    sock = short / "d.sock"
    with open(workdir / "dockerd.log", "ab") as log:
        process = subprocess.Popen(
            ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(short / "exec"), "--pidfile", str(short / "pid"),
             "-H", f"unix://{sock}", "--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-forward=false",
             "--ip-masq=false", "--userland-proxy=false"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    engine = ReferenceEngine(sock, process, root)
    try:
        deadline = time.monotonic() + 60
        while engine.docker("version").returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start: {(workdir / 'dockerd.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield engine
    finally:
        ids = engine.docker("ps", "-aq").stdout.split()
        if ids:
            engine.docker("rm", "-f", *ids)
        process.terminate()  # dockerd stops the containerd it started
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
