"""Named volumes, restart policies and resource limits on a real dockyardd (part of what
`docker compose`-style apps need; bridge networks and published ports are not built yet)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine import Daemon, engine_world

IMAGE = "busybox:resources"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with engine_world(tmp_path_factory.mktemp("engine-resources"), IMAGE) as (daemon, _, _):
        yield daemon


def inspect(daemon: Daemon, name: str) -> dict:
    return json.loads(daemon.docker("inspect", name, check=True).stdout)[0]


def eventually(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_a_named_volume_keeps_data_across_containers_and_cannot_go_while_used(daemon: Daemon) -> None:
    assert daemon.docker("volume", "create", "--label", "app=test", "keep", check=True).stdout == "keep\n"
    daemon.docker("run", "--rm", "-v", "keep:/data", IMAGE, "sh", "-c", "echo persisted > /data/file", check=True)
    assert daemon.docker("run", "--rm", "-v", "keep:/data:ro", IMAGE, "cat", "/data/file", check=True).stdout == "persisted\n"
    volume = json.loads(daemon.docker("volume", "inspect", "keep", check=True).stdout)[0]
    assert volume["Driver"] == "local" and volume["Labels"] == {"app": "test"} and Path(volume["Mountpoint"], "file").is_file()
    daemon.docker("run", "-d", "--name", "user-of-keep", "-v", "keep:/data", IMAGE, "sleep", "1000", check=True)
    mounts = inspect(daemon, "user-of-keep")["Mounts"]
    assert mounts[0]["Type"] == "volume" and mounts[0]["Name"] == "keep" and mounts[0]["Destination"] == "/data"
    refused = daemon.docker("volume", "rm", "keep")
    assert refused.returncode == 1 and "volume is in use" in refused.stderr
    daemon.docker("rm", "-f", "user-of-keep", check=True)
    daemon.docker("volume", "rm", "keep", check=True)
    assert "keep" not in daemon.docker("volume", "ls", "-q", check=True).stdout.split()
    missing = daemon.docker("volume", "inspect", "keep")
    assert missing.returncode == 1 and "no such volume" in missing.stderr


def test_a_new_volume_is_created_on_first_use_and_filled_from_the_image(daemon: Daemon) -> None:
    shown = daemon.docker("run", "--rm", "-v", "seeded:/etc/dockyard", IMAGE, "cat", "/etc/dockyard/greeting.txt", check=True)
    assert shown.stdout.startswith("hello from layer 3")
    assert "seeded" in daemon.docker("volume", "ls", "-q", check=True).stdout.split()
    daemon.docker("run", "--rm", "-v", "seeded:/etc/dockyard", IMAGE, "sh", "-c", "echo changed > /etc/dockyard/greeting.txt", check=True)
    again = daemon.docker("run", "--rm", "-v", "seeded:/etc/dockyard", IMAGE, "cat", "/etc/dockyard/greeting.txt", check=True)
    assert again.stdout == "changed\n"  # filled once, when new and empty
    pruned = daemon.docker("volume", "prune", "--all", "-f", check=True)
    assert "seeded" in pruned.stdout
    invalid = daemon.docker("volume", "create", "bad/name")
    assert invalid.returncode == 1 and "invalid characters for a local volume name" in invalid.stderr


def test_restart_on_failure_restarts_at_most_n_times(daemon: Daemon) -> None:
    daemon.docker("run", "-d", "--name", "flaky", "--restart", "on-failure:2", IMAGE, "sh", "-c", "echo run; exit 3", check=True)
    eventually(lambda: inspect(daemon, "flaky")["RestartCount"] == 2 and inspect(daemon, "flaky")["State"]["Status"] == "exited")
    time.sleep(1)
    state = inspect(daemon, "flaky")
    assert state["RestartCount"] == 2 and state["State"]["ExitCode"] == 3
    assert daemon.docker("logs", "flaky", check=True).stdout == "run\nrun\nrun\n"
    daemon.docker("rm", "flaky", check=True)
    succeeding = daemon.docker("run", "-d", "--name", "fine", "--restart", "on-failure", IMAGE, "true", check=True)
    assert succeeding.returncode == 0
    eventually(lambda: inspect(daemon, "fine")["State"]["Status"] == "exited")
    time.sleep(0.5)
    assert inspect(daemon, "fine")["RestartCount"] == 0  # exit 0: no restart
    daemon.docker("rm", "fine", check=True)


def test_restart_always_survives_exits_and_daemon_restarts_but_not_a_manual_stop(daemon: Daemon) -> None:
    daemon.docker("run", "-d", "--name", "always", "--restart", "always", IMAGE, "sh", "-c", "sleep 0.3; exit 1", check=True)
    eventually(lambda: inspect(daemon, "always")["RestartCount"] >= 2)
    daemon.docker("stop", "-t", "1", "always", check=True)
    count = inspect(daemon, "always")["RestartCount"]
    time.sleep(1.5)
    assert inspect(daemon, "always")["RestartCount"] == count and not inspect(daemon, "always")["State"]["Running"]
    daemon.docker("run", "-d", "--name", "unless", "--restart", "unless-stopped", IMAGE, "sleep", "1000", check=True)
    daemon.docker("stop", "-t", "0", "unless", check=True)
    daemon.restart()
    # `always` comes back with the daemon even after a manual stop; `unless-stopped` does not
    eventually(lambda: inspect(daemon, "always")["RestartCount"] > count or inspect(daemon, "always")["State"]["Running"])
    assert not inspect(daemon, "unless")["State"]["Running"]
    daemon.docker("rm", "-f", "always", "unless", check=True)
    conflicting = daemon.docker("run", "--rm", "--restart", "always", IMAGE, "true")
    assert conflicting.returncode != 0


def test_memory_pids_and_cpu_limits_reach_the_container(daemon: Daemon) -> None:
    hog = daemon.docker("run", "--name", "hog", "-m", "8m", IMAGE, "sh", "-c", "x=0123456789abcdef; while true; do x=$x$x; done")
    assert hog.returncode == 137
    state = inspect(daemon, "hog")["State"]
    assert state["OOMKilled"] is True and state["ExitCode"] == 137
    daemon.docker("rm", "hog", check=True)
    limited = daemon.docker("run", "--rm", "--pids-limit", "20", "--cpus", "0.5", IMAGE, "cat", "/sys/fs/cgroup/pids/pids.max", check=True)
    assert limited.stdout == "20\n"
    quota = daemon.docker("run", "--rm", "--cpus", "0.5", IMAGE, "cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", check=True)
    assert quota.stdout == "50000\n"
    too_small = daemon.docker("run", "--rm", "-m", "1k", IMAGE, "true")
    assert too_small.returncode == 125 and "Minimum memory limit allowed is 6MB" in too_small.stderr


def test_dockyard_drives_volumes_limits_and_restart_policies(daemon: Daemon) -> None:
    assert daemon.dockyard("volume", "create", "dy-vol").stdout == "dy-vol\n"
    ran = daemon.dockyard("run", "--rm", "-v", "dy-vol:/v", "-m", "64m", "--cpus", "1", "--pids-limit", "30", IMAGE,
                          "sh", "-c", "echo via-dockyard > /v/f; cat /sys/fs/cgroup/pids/pids.max")  # fmt: skip
    assert ran.returncode == 0 and ran.stdout == "30\n", ran.stderr
    assert "dy-vol" in daemon.dockyard("volume", "ls", "-q").stdout.split()
    assert json.loads(daemon.dockyard("volume", "inspect", "dy-vol").stdout)[0]["Name"] == "dy-vol"
    daemon.dockyard("run", "-d", "--name", "dy-flaky", "--restart", "on-failure:1", IMAGE, "false")
    eventually(lambda: inspect(daemon, "dy-flaky")["RestartCount"] == 1 and not inspect(daemon, "dy-flaky")["State"]["Restarting"])
    assert daemon.dockyard("rm", "-f", "dy-flaky").returncode == 0
    assert daemon.dockyard("volume", "rm", "dy-vol").stdout == "dy-vol\n"
    bad = daemon.dockyard("run", "--rm", "-m", "lots", IMAGE, "true")
    assert bad.returncode == 2 and "invalid size: 'lots'" in bad.stderr
