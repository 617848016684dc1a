"""The deployment files: docker-compose.yml is valid and sets only settings Dockyard reads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from registry.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
REGISTRY_SERVICES = ("registry-1", "registry-2")


def compose_config() -> dict:
    docker_compose = shutil.which("docker-compose")
    assert docker_compose, "docker-compose (Debian package) is installed by `make test`"
    result = subprocess.run(
        [docker_compose, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def settings_path_exists(variable: str) -> bool:
    """Whether DOCKYARD_A__B__C names the field a.b.c of the settings model."""
    model: type = Settings
    for part in variable.removeprefix("DOCKYARD_").lower().split("__"):
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return False
        model = fields[part].annotation
    return True


def test_compose_file_is_valid_and_runs_replicas_behind_a_balancer():
    config = compose_config()
    services = config["services"]
    assert {"minio", "create-bucket", "load-balancer", *REGISTRY_SERVICES} <= set(services)
    assert services["load-balancer"]["ports"][0]["published"] in (5000, "5000")
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    for service in REGISTRY_SERVICES:
        assert f"server {service}:5000;" in nginx
        assert services[service]["build"]["context"] == str(ROOT)


@pytest.mark.parametrize("service", REGISTRY_SERVICES)
def test_compose_sets_only_environment_names_the_settings_read(service, tmp_path):
    environment = compose_config()["services"][service]["environment"]
    dockyard = {key: value for key, value in environment.items() if key.startswith("DOCKYARD_")}
    assert dockyard, "the replicas are configured through DOCKYARD_* variables"
    unknown = [key for key in dockyard if not settings_path_exists(key)]
    assert unknown == []
    # The mounted config file plus that environment load into one valid S3 configuration.
    config_file = ROOT / "deploy" / "registry.yaml"
    volumes = compose_config()["services"][service]["volumes"]
    assert f"{ROOT / 'deploy'}:/etc/dockyard:ro" in volumes
    command = compose_config()["services"][service]["command"]
    assert command == ["--config", "/etc/dockyard/registry.yaml"]
    saved = dict(os.environ)
    try:
        os.environ.update({key: str(value) for key, value in dockyard.items()})
        settings = load_settings(config_file)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert settings.storage.backend == "s3"
    assert settings.storage.s3.bucket == "dockyard"
    assert settings.storage.s3.endpoint_url == "http://minio:9000"
    assert settings.storage.s3.redirect is False


def test_every_documented_variable_in_the_readme_is_a_setting():
    readme = (ROOT / "README.md").read_text()
    names = set(re.findall(r"`(DOCKYARD_[A-Z0-9_]+)`", readme)) - {"DOCKYARD_CONFIG"}
    assert names, "the README documents the environment"
    assert sorted(name for name in names if not settings_path_exists(name)) == []


def test_dockerfile_copies_every_package():
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) ", dockerfile, re.MULTILINE))
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages <= copied
    assert 'ENTRYPOINT ["dockyard-registry", "serve"]' in dockerfile


def test_the_installed_package_carries_every_file_the_registry_reads(tmp_path):
    """The Dockerfile installs the wheel, not the source tree: templates, static files and the
    metadata migrations (not Python packages) must be in it."""
    import shutil
    import subprocess
    import sys
    import zipfile

    source = tmp_path / "source"  # a copy: setuptools leaves a build/ directory where it builds
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "node_modules", "__pycache__", "*.egg-info", "data"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    [wheel] = tmp_path.glob("dockyard-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    needed = [path.relative_to(ROOT).as_posix() for pattern in ("registry/api/web/templates/*", "registry/api/web/static/*",
              "registry/core/metadata/migrations/*.py", "registry/core/metadata/migrations/*.mako",
              "registry/core/metadata/migrations/versions/*.py") for path in ROOT.glob(pattern)]  # fmt: skip
    assert needed and sorted(set(needed) - packaged) == []
