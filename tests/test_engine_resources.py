"""Volumes (named, anonymous from VOLUME and `-v /path`, `--mount`, tmpfs), restart policies and
resource limits on a real dockyardd: what `docker compose`-style apps need beside networks
(tests/test_engine_networks.py)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import docker
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


def volume_names(daemon: Daemon) -> set[str]:
    return set(daemon.docker("volume", "ls", "-q", check=True).stdout.split())


def test_image_volumes_are_anonymous_volumes_that_rm_v_and_run_rm_remove(daemon: Daemon, tmp_path: Path) -> None:
    daemon.docker("create", "--name", "volume-base", IMAGE, "true", check=True)
    daemon.docker("commit", "--change", "VOLUME /state", "volume-base", "busybox:with-volume", check=True)
    daemon.docker("rm", "volume-base", check=True)
    before = volume_names(daemon)
    daemon.docker("run", "-d", "--name", "anon", "busybox:with-volume", "sh", "-c", "echo kept > /state/f; sleep 600", check=True)
    mounts = inspect(daemon, "anon")["Mounts"]
    assert [(m["Type"], m["Destination"], len(m["Name"])) for m in mounts] == [("volume", "/state", 64)]
    anonymous = mounts[0]["Name"]
    assert anonymous in volume_names(daemon)
    daemon.docker("exec", "anon", "sh", "-c", "test -f /state/f", check=True)
    assert "/state/f" not in daemon.docker("diff", "anon", check=True).stdout  # the volume is not the container's layer
    daemon.docker("rm", "-f", "-v", "anon", check=True)
    assert volume_names(daemon) == before
    # `-v /path` too; without -v the volume stays (prune takes it); `run --rm` removes its own
    daemon.docker("run", "--name", "scratchy", "-v", "/scratch", IMAGE, "sh", "-c", "echo x > /scratch/y", check=True)
    left = inspect(daemon, "scratchy")["Mounts"][0]["Name"]
    daemon.docker("rm", "scratchy", check=True)
    assert left in volume_names(daemon)
    assert left in daemon.docker("volume", "prune", "-f", check=True).stdout
    daemon.docker("run", "--rm", "-v", "/scratch", "-v", "named-stays:/named", "busybox:with-volume", "true", check=True)
    assert volume_names(daemon) == before | {"named-stays"}
    daemon.docker("volume", "rm", "named-stays", check=True)
    # a build through a VOLUME leaves no volume behind
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox:with-volume\nRUN echo built > /built\nCMD [\"cat\", \"/built\"]\n")
    daemon.docker("build", "-q", "-t", "busybox:built-on-volume", str(context), check=True)
    assert volume_names(daemon) == before
    daemon.docker("rmi", "busybox:built-on-volume", "busybox:with-volume", check=True)


def test_mount_and_tmpfs_mounts(daemon: Daemon, tmp_path: Path) -> None:
    host = tmp_path / "host-dir"
    host.mkdir()
    (host / "given").write_text("from the host\n")
    shown = daemon.docker(
        "run", "--name", "mounted", "--mount", f"type=bind,source={host},target=/in,readonly",
        "--mount", "type=volume,source=mounted-data,target=/data", "--mount", "type=tmpfs,target=/fast,tmpfs-size=1m",
        "--tmpfs", "/run/app:size=2m,mode=1770", IMAGE, "sh", "-c",
        "cat /in/given; touch /in/x 2>/dev/null && echo writable; echo v > /data/v; echo t > /fast/t; grep -E ' /(fast|run/app) ' /proc/mounts",
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "from the host" and "writable" not in lines
    fast = next(line for line in lines if " /fast " in line)
    app = next(line for line in lines if " /run/app " in line)
    assert fast.startswith("tmpfs /fast tmpfs") and "size=1024k" in fast and "nosuid" in fast and "noexec" in fast
    assert "size=2048k" in app and "mode=1770" in app
    kinds = {m["Destination"]: m["Type"] for m in inspect(daemon, "mounted")["Mounts"]}
    assert kinds == {"/in": "bind", "/data": "volume", "/fast": "tmpfs", "/run/app": "tmpfs"}
    assert "/fast/t" not in daemon.docker("diff", "mounted", check=True).stdout
    daemon.docker("rm", "-v", "mounted", check=True)
    assert "mounted-data" in volume_names(daemon)  # a named volume is never removed by rm -v
    daemon.docker("volume", "rm", "mounted-data", check=True)
    missing = daemon.docker("run", "--rm", "--mount", f"type=bind,source={tmp_path}/absent,target=/x", IMAGE, "true")
    assert missing.returncode != 0 and "bind source path does not exist" in missing.stderr
    with contextlib.closing(docker.DockerClient(base_url=daemon.host, version="1.43")) as client:
        with pytest.raises(docker.errors.APIError) as error:
            client.api.create_container(IMAGE, "true", host_config=client.api.create_host_config(binds=["dup:/same"], tmpfs={"/same": ""}))
        assert error.value.status_code == 400 and "Duplicate mount point: /same" in str(error.value)
    bad = daemon.docker("run", "--rm", "--tmpfs", "/t:bogus=1", IMAGE, "true")
    assert bad.returncode != 0 and "invalid tmpfs option" in bad.stderr
    assert "dup" not in volume_names(daemon)


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


def test_dockyard_mounts_tmpfs_and_anonymous_volumes(daemon: Daemon) -> None:
    before = volume_names(daemon)
    ran = daemon.dockyard("run", "--name", "dy-mounts", "-v", "/anon", "--mount", "type=volume,source=dy-named,target=/named",
                          "--mount", "type=tmpfs,target=/t,tmpfs-size=512k", "--tmpfs", "/u:size=1m", IMAGE,
                          "sh", "-c", "echo a > /anon/a; echo n > /named/n; grep -E ' /(t|u) ' /proc/mounts")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "tmpfs /t tmpfs" in ran.stdout and "size=512k" in ran.stdout and "size=1024k" in ran.stdout
    mounts = {m["Destination"]: m for m in inspect(daemon, "dy-mounts")["Mounts"]}
    assert mounts["/anon"]["Type"] == "volume" and mounts["/named"]["Name"] == "dy-named" and mounts["/t"]["Type"] == "tmpfs"
    assert daemon.dockyard("rm", "-v", "dy-mounts").returncode == 0
    assert volume_names(daemon) == before | {"dy-named"}
    daemon.dockyard("volume", "rm", "dy-named")
    bad = daemon.dockyard("run", "--rm", "--mount", "type=volume,target=/x,colour=blue", IMAGE, "true")
    assert bad.returncode == 2 and "unexpected key 'colour'" in bad.stderr


def health(daemon: Daemon, name: str) -> dict:
    return inspect(daemon, name)["State"].get("Health") or {}


def test_health_checks_run_by_the_daemon_show_in_inspect_and_ps(daemon: Daemon, tmp_path: Path) -> None:
    daemon.docker("run", "-d", "--name", "checked", "--health-cmd", "test -f /tmp/ok && echo fine", "--health-interval", "200ms",
                  "--health-retries", "2", IMAGE, "sh", "-c", "sleep 2; touch /tmp/ok; sleep 600", check=True)  # fmt: skip
    assert health(daemon, "checked")["Status"] == "starting"
    assert "(health: starting)" in daemon.docker("ps", "-f", "name=checked", check=True).stdout
    eventually(lambda: health(daemon, "checked").get("Status") == "unhealthy")
    assert health(daemon, "checked")["FailingStreak"] >= 2
    assert daemon.docker("ps", "-q", "-f", "health=unhealthy", check=True).stdout.strip() == inspect(daemon, "checked")["Id"][:12]
    eventually(lambda: health(daemon, "checked").get("Status") == "healthy")
    state = health(daemon, "checked")
    assert state["FailingStreak"] == 0 and len(state["Log"]) <= 5
    assert state["Log"][-1]["ExitCode"] == 0 and state["Log"][-1]["Output"] == "fine\n"
    assert "(healthy)" in daemon.docker("ps", "-f", "name=checked", check=True).stdout
    assert inspect(daemon, "checked")["ExecIDs"] is None  # probes are not the container's execs
    daemon.docker("rm", "-f", "checked", check=True)

    daemon.docker("run", "-d", "--name", "slow-check", "--health-cmd", "sleep 5", "--health-timeout", "300ms",
                  "--health-interval", "200ms", "--health-retries", "1", IMAGE, "sleep", "600", check=True)  # fmt: skip
    eventually(lambda: health(daemon, "slow-check").get("Status") == "unhealthy")
    probe = health(daemon, "slow-check")["Log"][-1]
    assert probe["ExitCode"] == -1 and "Health check exceeded timeout (0.3s)" in probe["Output"]
    daemon.docker("rm", "-f", "slow-check", check=True)

    # an image's HEALTHCHECK applies, and --no-healthcheck turns it off
    context = tmp_path / "checked-image"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {IMAGE}\nHEALTHCHECK --interval=200ms --retries=1 CMD [\"true\"]\nCMD [\"sleep\", \"600\"]\n")
    daemon.docker("build", "-q", "-t", "busybox:checked", str(context), check=True)
    daemon.docker("run", "-d", "--name", "image-check", "busybox:checked", check=True)
    eventually(lambda: health(daemon, "image-check").get("Status") == "healthy")
    daemon.docker("run", "-d", "--name", "unchecked", "--no-healthcheck", "busybox:checked", check=True)
    time.sleep(0.6)
    assert "Health" not in inspect(daemon, "unchecked")["State"]
    daemon.docker("rm", "-f", "image-check", "unchecked", check=True)
    ran = daemon.dockyard("run", "-d", "--name", "dy-check", "--health-cmd", "true", "--health-interval", "200ms", IMAGE, "sleep", "600")
    assert ran.returncode == 0, ran.stderr
    eventually(lambda: health(daemon, "dy-check").get("Status") == "healthy")
    assert "(healthy)" in daemon.dockyard("ps", "-f", "name=dy-check").stdout
    daemon.dockyard("rm", "-f", "dy-check")
    bad = daemon.dockyard("run", "--rm", "--health-cmd", "true", "--health-interval", "soon", IMAGE, "true")
    assert bad.returncode == 2 and "invalid duration 'soon'" in bad.stderr
    daemon.docker("rmi", "busybox:checked", check=True)
