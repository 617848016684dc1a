"""Dockyard's engine beside the reference engine (Debian's dockerd 20.10): the same Dockerfile
gives the same layers with the same files, and what dockyardd builds, dockerd pulls and runs."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine import Daemon, ReferenceEngine, engine_world, reference_engine

DOCKERFILE = """\
FROM {base}
RUN echo built > /built.txt && mkdir -p /var/app && echo data > /var/app/data && rm /etc/dockyard/variant
COPY app.txt /app/
WORKDIR /srv/work
ENV STAGE=final
RUN cat /app/app.txt /built.txt > both.txt
CMD ["cat", "/srv/work/both.txt"]
"""


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, ReferenceEngine, str, int]]:
    workdir = tmp_path_factory.mktemp("engine-reference")
    with engine_world(workdir, "ref-base:1") as (daemon, registry, reference), reference_engine(workdir) as dockerd:
        dockerd.docker("pull", reference, check=True)  # the reference engine pulls from Dockyard's registry
        dockerd.docker("tag", reference, "ref-base:1", check=True)
        yield daemon, dockerd, reference, registry.port


def layer_listings(docker_save: str, env_runner, image: str, tmp_path: Path) -> list[list[str]]:
    """Each layer's entry names (sorted), from `docker save` of `image`."""
    archive = tmp_path / f"{docker_save}.tar"
    env_runner("save", "-o", str(archive), image, check=True)
    with tarfile.open(archive) as saved:
        manifest = json.loads(saved.extractfile("manifest.json").read())  # type: ignore[union-attr]
        listings = []
        for layer in manifest[0]["Layers"]:
            data = saved.extractfile(layer).read()  # type: ignore[union-attr]
            with tarfile.open(fileobj=io.BytesIO(data)) as inner:
                listings.append(sorted(name.rstrip("/") for name in inner.getnames()))
    return listings


def test_the_same_dockerfile_gives_the_same_layers_and_files_as_dockerd(engines, tmp_path: Path) -> None:
    daemon, dockerd, _, _ = engines
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE.format(base="ref-base:1"))
    (context / "app.txt").write_text("app\n")
    assert dockerd.docker("build", "-t", "same:1", str(context)).returncode == 0
    assert daemon.docker("build", "-t", "same:1", str(context)).returncode == 0
    assert daemon.dockyard("build", "-t", "same:2", str(context)).returncode == 0
    reference = layer_listings("dockerd", dockerd.docker, "same:1", tmp_path)
    ours = layer_listings("dockyardd", daemon.docker, "same:1", tmp_path)
    assert len(ours) == len(reference) == 7  # 3 base layers + RUN, COPY, WORKDIR, RUN
    assert ours == reference
    assert layer_listings("dockyard", daemon.docker, "same:2", tmp_path) == reference
    script = "cat /srv/work/both.txt /var/app/data; ls /etc/dockyard; pwd; echo $STAGE"
    expected = dockerd.docker("run", "--rm", "same:1", "sh", "-c", script, check=True).stdout
    assert daemon.docker("run", "--rm", "same:1", "sh", "-c", script, check=True).stdout == expected
    assert expected.startswith("app\nbuilt\ndata\n")


def test_what_dockyardd_builds_and_pushes_dockerd_pulls_and_runs(engines, tmp_path: Path) -> None:
    daemon, dockerd, _, port = engines
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM ref-base:1\nRUN echo 'made by dockyardd' > /origin\nCMD [\"cat\", \"/origin\"]\n")
    target = f"127.0.0.1:{port}/acme/portable:1"
    assert daemon.docker("build", "-t", target, str(context)).returncode == 0
    daemon.docker("push", target, check=True)
    dockerd.docker("pull", target, check=True)
    assert dockerd.docker("run", "--rm", target, check=True).stdout == "made by dockyardd\n"
    history = dockerd.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", target, check=True).stdout.splitlines()
    assert history[:2] == ['/bin/sh -c #(nop)  CMD ["cat", "/origin"]', "/bin/sh -c echo 'made by dockyardd' > /origin"]
