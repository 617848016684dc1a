"""`build` against a real dockyardd with real containers: layers and history, the cache, multi-stage,
.dockerignore, substitution, failures and bad Dockerfiles -- through the stock `docker build`
(legacy builder), docker-py and `dockyard build`."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine import Daemon, engine_world

BASE = "busybox:build"

THREE_STEPS = f"""\
FROM {BASE}
RUN echo built > /built.txt
COPY app.txt /app/
RUN cat /app/app.txt /built.txt > /app/both.txt
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with engine_world(tmp_path_factory.mktemp("engine-build"), BASE) as (daemon, _, _):
        yield daemon


def context(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    directory = tmp_path / "context"
    directory.mkdir(exist_ok=True)
    (directory / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    return directory


def build(daemon: Daemon, directory: Path, *args: str):
    return daemon.docker("build", *args, str(directory), timeout=300)


def inspect(daemon: Daemon, image: str) -> dict:
    return json.loads(daemon.docker("inspect", "--type", "image", image, check=True).stdout)[0]


def test_three_steps_give_three_layers_history_and_a_runnable_image(daemon: Daemon, tmp_path: Path) -> None:
    directory = context(tmp_path, THREE_STEPS + 'CMD ["cat", "/app/both.txt"]\n', {"app.txt": "app v1\n"})
    first = build(daemon, directory, "-t", "three:1")
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "Step 1/5 : FROM busybox:build" in out and "Step 4/5 : RUN cat /app/app.txt /built.txt > /app/both.txt" in out
    assert " ---> Running in " in out and "Removing intermediate container" in out
    assert "Successfully tagged three:1" in out
    base_layers = inspect(daemon, BASE)["RootFS"]["Layers"]
    image = inspect(daemon, "three:1")
    assert image["RootFS"]["Layers"][:3] == base_layers and len(image["RootFS"]["Layers"]) == len(base_layers) + 3
    history = [step["CreatedBy"] for step in json.loads("[" + ",".join(daemon.docker("history", "--no-trunc", "--format", "{{json .}}", "three:1", check=True).stdout.split("\n")[:-1]) + "]")]
    assert history[0] == '/bin/sh -c #(nop)  CMD ["cat", "/app/both.txt"]'
    assert history[1] == "/bin/sh -c cat /app/app.txt /built.txt > /app/both.txt"
    assert history[2].startswith("/bin/sh -c #(nop) COPY file:") and history[2].endswith(" in /app/ ")
    assert history[3] == "/bin/sh -c echo built > /built.txt"
    assert daemon.docker("run", "--rm", "three:1", check=True).stdout == "app v1\nbuilt\n"
    # no intermediate container is left behind
    assert daemon.docker("ps", "-aq").stdout == ""

    again = build(daemon, directory, "-t", "three:1")
    assert again.returncode == 0
    assert again.stdout.count(" ---> Using cache") == 4 and " ---> Running in " not in again.stdout
    assert inspect(daemon, "three:1")["Id"] == image["Id"]

    (directory / "app.txt").write_text("app v2\n")
    changed = build(daemon, directory, "-t", "three:2")
    steps = changed.stdout.split("Step ")
    assert " ---> Using cache" in steps[2]  # the RUN before the COPY
    assert all(" ---> Using cache" not in step for step in steps[3:])  # from the COPY on
    assert daemon.docker("run", "--rm", "three:2", check=True).stdout == "app v2\nbuilt\n"
    assert inspect(daemon, "three:2")["RootFS"]["Layers"][:4] == image["RootFS"]["Layers"][:4]

    uncached = build(daemon, directory, "--no-cache", "-q", "-t", "three:3")
    assert uncached.returncode == 0 and uncached.stdout.strip().startswith("sha256:")


def test_multi_stage_copies_from_a_stage_skips_unused_ones_and_tags_only_the_target(daemon: Daemon, tmp_path: Path) -> None:
    dockerfile = f"""\
FROM {BASE} AS builder
RUN mkdir /out && echo compiled > /out/artifact
FROM {BASE} AS unused
RUN exit 3
FROM {BASE}
COPY --from=builder /out/artifact /usr/local/artifact
CMD ["cat", "/usr/local/artifact"]
"""
    directory = context(tmp_path, dockerfile)
    result = build(daemon, directory, "-t", "multi:1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RUN exit 3" not in result.stdout
    assert daemon.docker("run", "--rm", "multi:1", check=True).stdout == "compiled\n"
    target = build(daemon, directory, "--target", "builder", "-t", "multi:builder")
    assert target.returncode == 0
    assert daemon.docker("run", "--rm", "multi:builder", "cat", "/out/artifact", check=True).stdout == "compiled\n"
    assert "COPY --from" not in target.stdout
    tags = daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}}", check=True).stdout.split()
    assert "multi:1" in tags and "multi:builder" in tags and not any(t.startswith("multi:<none>") for t in tags)


def test_dockerignore_excludes_with_docker_rules(daemon: Daemon, tmp_path: Path) -> None:
    files = {"keep.txt": "kept\n", "secret.env": "nope\n", "logs/a.log": "x\n", "logs/important.log": "yes\n", "deep/x/y.tmp": "t\n"}
    directory = context(tmp_path, "FROM scratch\n", files)
    (directory / "build").mkdir()
    (directory / "build" / "Other.dockerfile").write_text(f"FROM {BASE}\nCOPY . /ctx/\n")
    (directory / ".dockerignore").write_text("*.env\nlogs/*\n!logs/important.log\n**/*.tmp\n")
    assert build(daemon, directory, "-f", str(directory / "build" / "Other.dockerfile"), "-t", "ignored:1").returncode == 0
    listing = daemon.docker("run", "--rm", "ignored:1", "sh", "-c", "cd /ctx && find . -type f | sort", check=True).stdout.split()
    assert "./keep.txt" in listing and "./logs/important.log" in listing
    assert "./secret.env" not in listing and "./logs/a.log" not in listing and "./deep/x/y.tmp" not in listing
    (directory / "Dockerfile").write_text(f"FROM {BASE}\nCOPY secret.env /\n")
    refused = build(daemon, directory)
    assert refused.returncode == 1 and "file not found in build context or excluded by .dockerignore" in refused.stderr


def test_args_env_and_substitution_as_docker_does_them(daemon: Daemon, tmp_path: Path) -> None:
    dockerfile = f"""\
ARG BASE_IMAGE={BASE}
FROM $BASE_IMAGE
ARG GREETING=hello
ARG UNSET
ENV TARGET=/opt/app NAME="two words"
ENV DEFAULTED=${{UNSET:-fallback}} ALTERNATE=${{GREETING:+set}} LITERAL=\\$HOME
WORKDIR $TARGET
WORKDIR sub
RUN echo "$GREETING $TARGET" > greeting.txt
LABEL org.example.name="$NAME" version=1
EXPOSE 8080 53/udp
USER app
CMD ["sh", "-c", "pwd; cat greeting.txt; echo $DEFAULTED $ALTERNATE $LITERAL; id -un"]
"""
    directory = context(tmp_path, dockerfile)
    result = build(daemon, directory, "--build-arg", "GREETING=bonjour", "--build-arg", "IGNORED=1", "-t", "subst:1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[Warning] One or more build-args [IGNORED] were not consumed" in result.stdout
    ran = daemon.docker("run", "--rm", "subst:1", check=True).stdout.splitlines()
    assert ran == ["/opt/app/sub", "bonjour /opt/app", "fallback set $HOME", "app"]
    config = inspect(daemon, "subst:1")["Config"]
    assert config["Labels"] == {"org.example.name": "two words", "version": "1"}
    assert set(config["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    assert "GREETING=bonjour" not in config["Env"]  # build args are not kept in the image
    assert config["WorkingDir"] == "/opt/app/sub" and config["User"] == "app"


def test_copy_and_add_options(daemon: Daemon, tmp_path: Path) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        data = b"from the archive\n"
        info = tarfile.TarInfo("inside/file.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    directory = context(tmp_path, f"""\
FROM {BASE}
COPY --chown=app:app --chmod=640 owned.txt /data/
COPY dir/ /copied/
ADD bundle.tar.gz /unpacked/
COPY *.md /docs/
""", {"owned.txt": "mine\n", "dir/a.txt": "a\n", "dir/nested/b.txt": "b\n", "one.md": "1\n", "two.md": "2\n"})
    (directory / "bundle.tar.gz").write_bytes(archive.getvalue())
    assert build(daemon, directory, "-t", "copies:1").returncode == 0
    shown = daemon.docker("run", "--rm", "copies:1", "sh", "-c",
                          "stat -c '%U %G %a' /data/owned.txt; cat /copied/a.txt /copied/nested/b.txt /unpacked/inside/file.txt; ls /docs",
                          check=True).stdout.splitlines()  # fmt: skip
    assert shown == ["app app 640", "a", "b", "from the archive", "one.md", "two.md"]


def test_a_failing_run_stops_with_its_code_and_tags_nothing(daemon: Daemon, tmp_path: Path) -> None:
    directory = context(tmp_path, f"FROM {BASE}\nRUN echo before-failing\nRUN echo to-stderr >&2; exit 42\nRUN echo never\n")
    before = daemon.docker("ps", "-aq").stdout
    failed = build(daemon, directory, "--force-rm", "-t", "failing:1")
    assert failed.returncode == 42
    assert "The command '/bin/sh -c echo to-stderr >&2; exit 42' returned a non-zero code: 42" in failed.stderr
    assert "to-stderr" in failed.stdout and "never" not in failed.stdout.split("Step 3/4")[1]
    assert daemon.docker("inspect", "--type", "image", "failing:1").returncode == 1
    assert daemon.docker("ps", "-aq").stdout == before  # --force-rm: no container either
    kept = build(daemon, directory, "-t", "failing:1")
    assert kept.returncode == 42
    leftover = daemon.docker("ps", "-aq", "--filter", "status=exited").stdout.split()
    assert len(leftover) == 1  # without --force-rm the failed step's container stays, as Docker keeps it
    daemon.docker("rm", *leftover, check=True)


@pytest.mark.parametrize(
    ("dockerfile", "message"),
    [
        (f"FROM {BASE}\nFROBNICATE x\n", "line 2: unknown instruction: FROBNICATE"),
        ("RUN echo no base\n", "line 1: no build stage in current context"),
        (f"FROM {BASE}\nCOPY missing.txt /\n", "COPY failed (line 2): file not found in build context"),
        (f"FROM {BASE}\nCOPY ../outside /\n", "COPY failed (line 2): forbidden path outside the build context: ../outside"),
        (f"FROM {BASE}\nADD https://example.invalid/x.tar /\n", "line 2: ADD of the remote URL https://example.invalid/x.tar is not supported"),
        (f'FROM {BASE}\nENV X="${{NOPE:?must be set}}"\n', "line 2: NOPE: must be set"),
    ],
)
def test_bad_dockerfiles_are_clear_errors_naming_the_line(daemon: Daemon, tmp_path: Path, dockerfile: str, message: str) -> None:
    before = daemon.docker("ps", "-aq").stdout
    result = build(daemon, context(tmp_path, dockerfile), "-t", "bad:1")
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert daemon.docker("inspect", "--type", "image", "bad:1").returncode == 1
    assert daemon.docker("ps", "-aq").stdout == before


def test_docker_py_and_dockyard_build_the_same_image(daemon: Daemon, tmp_path: Path) -> None:
    import docker

    directory = context(tmp_path, THREE_STEPS, {"app.txt": "same\n"})
    client = docker.DockerClient(base_url=daemon.host, version="auto")
    try:
        image, logs = client.images.build(path=str(directory), tag="py-built:1")
        assert any("Successfully built" in entry.get("stream", "") for entry in logs)
        py_layers = image.attrs["RootFS"]["Layers"]
    finally:
        client.close()
    built = daemon.dockyard("build", "-t", "dy-built:1", "--no-cache", str(directory))
    assert built.returncode == 0, built.stderr
    assert "Successfully tagged dy-built:1" in built.stdout
    dy_layers = inspect(daemon, "dy-built:1")["RootFS"]["Layers"]
    assert len(dy_layers) == len(py_layers)
    listing = "cat /app/app.txt /built.txt /app/both.txt"
    assert daemon.docker("run", "--rm", "py-built:1", "sh", "-c", listing, check=True).stdout == daemon.docker(
        "run", "--rm", "dy-built:1", "sh", "-c", listing, check=True
    ).stdout
    failed = daemon.dockyard("build", "-f", "-", str(directory), input=f"FROM {BASE}\nRUN exit 9\n".encode())
    assert failed.returncode == 9 and "returned a non-zero code: 9" in failed.stderr


def test_config_instructions_heredocs_onbuild_labels_and_iidfile(daemon: Daemon, tmp_path: Path) -> None:
    parent = context(tmp_path, f"""\
FROM {BASE}
MAINTAINER Jane Doe <jane@example.com>
SHELL ["/bin/sh", "-c"]
RUN <<EOT
echo from a heredoc > /heredoc.txt
EOT
ENTRYPOINT ["sh", "-c"]
CMD ["cat /heredoc.txt"]
VOLUME /data
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=5s --retries=2 CMD test -e /heredoc.txt
ONBUILD RUN echo triggered > /onbuild.txt
""")
    iidfile = tmp_path / "iid"
    result = build(daemon, parent, "-t", "parent:1", "-t", "parent:2", "--label", "team=dock", "--iidfile", str(iidfile))
    assert result.returncode == 0, result.stdout + result.stderr
    image = inspect(daemon, "parent:1")
    assert iidfile.read_text() == image["Id"] and inspect(daemon, "parent:2")["Id"] == image["Id"]
    config = image["Config"]
    assert image["Author"] == "Jane Doe <jane@example.com>"
    assert config["Entrypoint"] == ["sh", "-c"] and config["Cmd"] == ["cat /heredoc.txt"]
    assert config["Volumes"] == {"/data": {}} and config["StopSignal"] == "SIGUSR1"
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "test -e /heredoc.txt"], "Interval": 5_000_000_000, "Retries": 2}
    assert config["OnBuild"] == ["RUN echo triggered > /onbuild.txt"] and config["Labels"] == {"team": "dock"}
    assert daemon.docker("run", "--rm", "parent:1", check=True).stdout == "from a heredoc\n"

    child = tmp_path / "child"
    child.mkdir()
    (child / "Dockerfile").write_text('FROM parent:1\nCMD ["cat /onbuild.txt"]\n')
    assert build(daemon, child, "-t", "child:1").returncode == 0
    assert daemon.docker("run", "--rm", "child:1", check=True).stdout == "triggered\n"
    assert inspect(daemon, "child:1")["Config"].get("OnBuild") is None  # triggers run once, not inherited

    tar_context = io.BytesIO()
    with tarfile.open(fileobj=tar_context, mode="w") as tar:
        dockerfile = f"FROM {BASE}\nCOPY note /note\n".encode()
        for name, data in (("Dockerfile", dockerfile), ("note", b"from a tar on stdin\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    piped = daemon.dockyard("build", "-t", "from-stdin:1", "-", input=tar_context.getvalue())
    assert piped.returncode == 0, piped.stderr
    assert daemon.docker("run", "--rm", "from-stdin:1", "cat", "/note", check=True).stdout == "from a tar on stdin\n"
