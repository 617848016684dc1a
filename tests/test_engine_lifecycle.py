"""Container lifecycle through the stock docker CLI against a real dockyardd: exit codes, streams,
logs, exec, stop/kill/restart/wait, daemon restarts and kill -9, names, mounts, bad input."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine import Daemon, Pty, engine_world, start_daemon

IMAGE = "busybox:engine"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with engine_world(tmp_path_factory.mktemp("engine-lifecycle"), IMAGE) as (daemon, _, _):
        yield daemon


def state(daemon: Daemon, name: str) -> dict:
    return json.loads(daemon.docker("inspect", "--type", "container", name, check=True).stdout)[0]["State"]


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def test_exit_codes_are_dockers_and_failed_runs_leave_nothing(daemon: Daemon) -> None:
    before = daemon.docker("ps", "-aq").stdout
    assert daemon.docker("run", "--rm", IMAGE, "sh", "-c", "exit 3").returncode == 3
    missing = daemon.docker("run", "--rm", IMAGE, "no-such-command")
    assert missing.returncode == 127
    assert 'exec: "no-such-command": executable file not found in $PATH' in missing.stderr
    not_executable = daemon.docker("run", "--rm", IMAGE, "/etc/passwd")
    assert not_executable.returncode == 126, not_executable.stderr
    bad_user = daemon.docker("run", "--rm", "-u", "nosuchuser", IMAGE, "id")
    assert bad_user.returncode == 125
    assert "unable to find user nosuchuser" in bad_user.stderr
    assert daemon.docker("ps", "-aq").stdout == before


def test_interactive_run_pipes_stdin_and_keeps_stdout_and_stderr_apart(daemon: Daemon) -> None:
    result = daemon.docker("run", "-i", "--rm", IMAGE, "sh", "-c", "cat; echo to-stderr >&2", input=b"from stdin\n")
    assert result.returncode == 0
    assert result.stdout == "from stdin\n"
    assert result.stderr == "to-stderr\n"


def test_config_flags_reach_the_process(daemon: Daemon, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("FROM_FILE=yes\n")
    result = daemon.docker(
        "run", "--rm", "-e", "GREETING=hi", "--env-file", str(env_file), "-w", "/tmp", "-u", "app", "--hostname", "boat",
        "--entrypoint", "sh", IMAGE, "-c", 'echo "$GREETING $FROM_FILE $(pwd) $(id -un) $(id -G) $(hostname) $HOME"',
        check=True,
    )  # fmt: skip
    assert result.stdout == "hi yes /tmp app 1000 10 boat /home/app\n"
    numeric = daemon.docker("run", "--rm", "-u", "4321:99", IMAGE, "id", check=True)
    assert numeric.stdout.startswith("uid=4321 gid=99")


def test_bind_mounts_and_read_only_root(daemon: Daemon, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("from the host\n")
    daemon.docker("run", "--name", "binder", "-v", f"{shared}:/data", IMAGE, "sh", "-c", "cat /data/in.txt > /data/out.txt", check=True)
    assert (shared / "out.txt").read_text() == "from the host\n"
    inspected = json.loads(daemon.docker("inspect", "binder", check=True).stdout)[0]
    assert inspected["Mounts"] == [{"Type": "bind", "Source": str(shared), "Destination": "/data", "Mode": "", "RW": True, "Propagation": "rprivate"}]
    assert inspected["Image"] == json.loads(daemon.docker("inspect", IMAGE, check=True).stdout)[0]["Id"]
    assert inspected["Config"]["Image"] == IMAGE and inspected["HostConfig"]["Binds"] == [f"{shared}:/data"]
    graph = inspected["GraphDriver"]["Data"]
    assert Path(graph["UpperDir"]).is_dir() and len(graph["LowerDir"].split(":")) == 4  # init + 3 image layers
    assert all(Path(path).is_dir() for path in graph["LowerDir"].split(":"))
    assert inspected["State"]["Status"] == "exited" and inspected["State"]["FinishedAt"] > inspected["State"]["StartedAt"]
    daemon.docker("rm", "binder", check=True)
    read_only = daemon.docker("run", "--rm", "-v", f"{shared}:/data:ro", IMAGE, "touch", "/data/nope")
    assert read_only.returncode != 0 and not (shared / "nope").exists()
    root_ro = daemon.docker("run", "--rm", "--read-only", IMAGE, "touch", "/new-file")
    assert root_ro.returncode != 0 and "Read-only file system" in root_ro.stderr


def test_detached_logs_keep_streams_apart_and_tail(daemon: Daemon) -> None:
    daemon.docker("run", "-d", "--name", "talker", IMAGE, "sh", "-c", "echo out1; echo err1 >&2; sleep 0.3; echo out2", check=True)
    assert daemon.docker("wait", "talker", check=True).stdout == "0\n"
    logs = daemon.docker("logs", "talker", check=True)
    assert logs.stdout == "out1\nout2\n" and logs.stderr == "err1\n"
    tail = daemon.docker("logs", "--tail", "1", "talker", check=True)
    assert tail.stdout == "out2\n" and tail.stderr == ""
    daemon.docker("rm", "talker", check=True)


def test_stop_kill_restart_and_wait(daemon: Daemon) -> None:
    daemon.docker("run", "-d", "--name", "polite", IMAGE, "sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done", check=True)
    assert state(daemon, "polite")["Running"]
    daemon.docker("stop", "-t", "10", "polite", check=True)
    assert state(daemon, "polite")["ExitCode"] == 0
    daemon.docker("start", "polite", check=True)
    assert state(daemon, "polite")["Status"] == "running"
    daemon.docker("kill", "polite", check=True)
    assert daemon.docker("wait", "polite", check=True).stdout == "137\n"
    daemon.docker("restart", "-t", "1", "polite", check=True)
    assert state(daemon, "polite")["Running"]
    killed = daemon.docker("kill", "-s", "TERM", "polite", check=True)
    assert killed.stdout.strip() == "polite"
    assert daemon.docker("wait", "polite", check=True).stdout == "0\n"
    assert daemon.docker("kill", "polite").returncode == 1  # not running
    # pid 1 ignores SIGTERM without a handler: stop escalates to SIGKILL after -t
    daemon.docker("run", "-d", "--name", "stubborn", IMAGE, "sleep", "1000", check=True)
    started = time.monotonic()
    daemon.docker("stop", "-t", "1", "stubborn", check=True)
    assert time.monotonic() - started < 8
    assert state(daemon, "stubborn")["ExitCode"] == 137
    daemon.docker("rm", "polite", "stubborn", check=True)


def test_ps_lists_filters_and_quiet(daemon: Daemon) -> None:
    daemon.docker("run", "-d", "--name", "up-one", "--label", "team=dock", IMAGE, "sleep", "1000", check=True)
    daemon.docker("run", "--name", "done-one", IMAGE, "true", check=True)
    running = daemon.docker("ps", "--format", "{{.Names}}", check=True).stdout.split()
    assert "up-one" in running and "done-one" not in running
    every = daemon.docker("ps", "-a", "--format", "{{.Names}} {{.Status}}", check=True).stdout
    assert "done-one Exited (0)" in every and "up-one Up" in every
    exited = daemon.docker("ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}", check=True).stdout.split()
    assert "done-one" in exited and "up-one" not in exited
    labelled = daemon.docker("ps", "-q", "--filter", "label=team=dock", check=True).stdout.split()
    assert len(labelled) == 1 and len(labelled[0]) == 12
    table = daemon.docker("ps", check=True).stdout.splitlines()[0].split()
    assert table[:3] == ["CONTAINER", "ID", "IMAGE"]
    assert daemon.docker("rm", "up-one").returncode == 1  # running: refused without -f
    daemon.docker("rm", "-f", "up-one", "done-one", check=True)
    assert "up-one" not in daemon.docker("ps", "-a", "--format", "{{.Names}}", check=True).stdout


def test_exec_runs_in_the_container_with_its_exit_code_and_stdin(daemon: Daemon) -> None:
    daemon.docker("run", "-d", "--name", "host-of-execs", IMAGE, "sh", "-c", "echo marker > /tmp/m; sleep 1000", check=True)
    wait_until(lambda: daemon.docker("exec", "host-of-execs", "cat", "/tmp/m").stdout == "marker\n")
    assert daemon.docker("exec", "host-of-execs", "sh", "-c", "exit 5").returncode == 5
    piped = daemon.docker("exec", "-i", "host-of-execs", "sh", "-c", "cat > /tmp/piped; cat /tmp/piped", input=b"via exec\n")
    assert piped.stdout == "via exec\n"
    assert daemon.docker("exec", "-u", "app", "host-of-execs", "id", "-u", check=True).stdout == "1000\n"
    missing = daemon.docker("exec", "host-of-execs", "no-such-command")
    assert missing.returncode in (126, 127) and "executable file not found" in (missing.stdout + missing.stderr)
    daemon.docker("stop", "-t", "1", "host-of-execs", check=True)
    stopped = daemon.docker("exec", "host-of-execs", "true")
    assert stopped.returncode != 0 and "is not running" in stopped.stderr
    daemon.docker("rm", "host-of-execs", check=True)


def test_tty_is_a_real_terminal_that_resizes(daemon: Daemon) -> None:
    session = Pty(["docker", "run", "-it", "--rm", IMAGE, "sh"], daemon.env, rows=30, cols=100)
    session.expect(b"# ")
    session.type("stty size; tty\r")
    session.expect(b"30 100\r\n")
    session.expect(b"/dev/pts/0")
    session.resize(40, 120)
    time.sleep(0.5)
    session.type("stty size\r")
    session.expect(b"40 120\r\n")
    session.type("exit 9\r")
    assert session.wait() == 9


def test_names_and_bad_input_get_clear_errors_and_leave_nothing(daemon: Daemon) -> None:
    daemon.docker("create", "--name", "taken", IMAGE, "true", check=True)
    before = daemon.docker("ps", "-aq").stdout
    duplicate = daemon.docker("run", "--name", "taken", IMAGE, "true")
    assert duplicate.returncode == 125 and 'The container name "/taken" is already in use' in duplicate.stderr
    invalid = daemon.docker("create", "--name", "bad name!", IMAGE, "true")  # create says 1 where run says 125
    assert invalid.returncode == 1 and "Invalid container name" in invalid.stderr
    volumes_before = daemon.docker("volume", "ls", "-q", check=True).stdout
    volume = daemon.docker("run", "--rm", "-v", "bad*name:/data", IMAGE, "true")
    assert volume.returncode == 125 and "invalid volume specification: 'bad*name:/data'" in volume.stderr
    relative = daemon.docker("run", "--rm", "-v", "/tmp:relative", IMAGE, "true")
    assert relative.returncode == 125 and "mount path must be absolute" in relative.stderr
    assert daemon.docker("volume", "ls", "-q", check=True).stdout == volumes_before
    unknown = daemon.docker("start", "no-such-container")
    assert unknown.returncode == 1 and "No such container: no-such-container" in unknown.stderr
    absent = daemon.docker("run", "--rm", "127.0.0.1:1/nothing/here:1", "true")
    assert absent.returncode == 125 and "Unable to find image" in absent.stderr
    assert daemon.docker("ps", "-aq").stdout == before
    daemon.docker("rm", "taken", check=True)


def test_rmi_refuses_images_that_containers_use(daemon: Daemon) -> None:
    daemon.docker("tag", IMAGE, "held:1", check=True)
    image_id = daemon.docker("inspect", "-f", "{{.Id}}", "held:1", check=True).stdout.strip()
    daemon.docker("run", "-d", "--name", "holder", "held:1", "sleep", "1000", check=True)
    by_id = daemon.docker("rmi", "-f", image_id)
    assert by_id.returncode == 1 and "image is being used by running container" in by_id.stderr
    daemon.docker("stop", "-t", "0", "holder", check=True)
    stopped = daemon.docker("rmi", image_id)
    assert stopped.returncode == 1 and "must be forced" in stopped.stderr
    untag = daemon.docker("rmi", "held:1", check=True)  # another name (IMAGE) keeps the image: untag only
    assert untag.stdout == "Untagged: held:1\n"
    daemon.docker("rm", "holder", check=True)
    assert daemon.docker("inspect", IMAGE).returncode == 0


def test_containers_survive_a_daemon_kill_9_and_exits_meanwhile_are_recorded(daemon: Daemon) -> None:
    daemon.docker("run", "-d", "--name", "survivor", IMAGE, "sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done", check=True)
    daemon.docker("run", "-d", "--name", "quitter", IMAGE, "sh", "-c", "sleep 2; exit 42", check=True)
    daemon.kill9()
    time.sleep(3)  # the quitter exits while no daemon runs; the survivor keeps printing
    daemon.restart()
    assert state(daemon, "survivor")["Running"]
    quitter = state(daemon, "quitter")
    assert quitter["Status"] == "exited" and quitter["ExitCode"] == 42
    ticks = daemon.docker("logs", "survivor", check=True).stdout.splitlines()
    assert len(ticks) >= 12 and ticks[:2] == ["tick 0", "tick 1"]  # nothing lost while the daemon was down
    # a clean restart keeps running containers running (on_shutdown: keep), logs included
    daemon.restart()
    assert state(daemon, "survivor")["Running"]
    daemon.docker("stop", "-t", "1", "survivor", check=True)
    assert state(daemon, "survivor")["Status"] == "exited"
    daemon.docker("rm", "survivor", "quitter", check=True)


def test_second_daemon_on_the_same_data_root_is_refused(daemon: Daemon) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "engine.daemon", "--host", f"unix://{daemon.socket}.2", "--data-root", str(daemon.root)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"is using the data root {daemon.root}" in result.stderr
    bad = subprocess.run([sys.executable, "-m", "engine.daemon", "--host", "tcp://0.0.0.0:1"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "host must be unix:///PATH" in bad.stderr


def test_sigterm_with_on_shutdown_stop_stops_containers_and_the_socket_is_0660(daemon: Daemon, tmp_path: Path) -> None:
    import stat

    other = start_daemon(tmp_path, env={"DOCKYARD_ON_SHUTDOWN": "stop", "DOCKYARD_STOP_TIMEOUT": "1"})
    try:
        assert stat.S_IMODE(other.socket.stat().st_mode) == 0o660
        archive = tmp_path / "image.tar"
        daemon.docker("save", "-o", str(archive), IMAGE, check=True)
        other.docker("load", "-i", str(archive), check=True)
        other.docker("run", "-d", "--name", "stopped-by-sigterm", IMAGE, "sleep", "1000", check=True)
        shims = other.shim_pids()
        assert shims
        other.process.terminate()
        assert other.process.wait(30) == 0
        for pid in shims:  # the container (and its shim) ended with the daemon
            wait_until(lambda: not Path(f"/proc/{pid}").exists())
        other.restart()
        stopped = state(other, "stopped-by-sigterm")
        assert stopped["Status"] == "exited" and stopped["ExitCode"] == 137
    finally:
        other.stop()
