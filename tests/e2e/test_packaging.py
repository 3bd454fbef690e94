"""Packaging: the SPDX license and its file, the wheel the Dockerfile installs (with every package
data file), and the Dockerfile itself. There is no container runtime on the test machines: the
image is built and run only where ``docker`` exists; elsewhere what can be checked is checked."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("connector_core", "adapters", "entrypoints")


def test_the_license_is_an_spdx_expression_matching_the_license_file() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "Apache-2.0"
    assert project["project"]["license-files"] == ["LICENSE"]
    requires = project["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(\d+).*", r) and int(r.split(">=")[1].split(".")[0]) >= 77 for r in requires)
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_dockerfile_is_multi_stage_non_root_with_the_data_dir_as_a_volume() -> None:
    steps = dockerfile()
    stages = [i for i, (op, _) in enumerate(steps) if op == "FROM"]
    assert len(stages) >= 2
    assert steps[stages[0]][1].endswith(" AS build")
    final = steps[stages[-1] :]
    copies = [args for op, args in final if op == "COPY"]
    assert copies and all(c.startswith("--from=build ") for c in copies), "the final stage holds only built wheels"
    users = [args for op, args in final if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(op == "VOLUME" and "/data" in args for op, args in final)
    env = " ".join(args for op, args in final if op == "ENV")
    assert "CM_DATA_DIR=/data" in env and "CM_HOST=0.0.0.0" in env
    assert ("CMD", '["serve"]') in final and ("ENTRYPOINT", '["connector-manager"]') in final
    # every file the build stage copies exists in the repository
    for op, args in steps[stages[0] : stages[1]]:
        if op == "COPY":
            *sources, _ = args.split()
            for source in sources:
                assert (REPO / source).exists(), source


def package_data_files() -> set[str]:
    """Every file of the packages that is not Python source: it must ship in the wheel."""
    return {
        p.relative_to(REPO).as_posix()
        for package in PACKAGES
        for p in (REPO / package).rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_wheel_the_image_installs_holds_the_package_its_data_and_its_license(tmp_path: Path) -> None:
    """The Dockerfile's first stage builds a wheel with pip from these files: so does this test."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-q", "-w", str(tmp_path / "w"), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "w").glob("connector_manager-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = package_data_files() - names
    assert not missing, f"package data missing from the wheel (add it to [tool.setuptools.package-data]): {missing}"
    assert "connector_core/catalog/connectors.json" in names and "connector_core/py.typed" in names
    assert "entrypoints/cli/__main__.py" in names and "entrypoints/cli/commands/serve.py" in names
    dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert f"{dist_info}/licenses/LICENSE" in names
    with zipfile.ZipFile(wheel) as z:
        metadata = z.read(f"{dist_info}/METADATA").decode()
        entry_points = z.read(f"{dist_info}/entry_points.txt").decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "connector-manager = entrypoints.cli:main" in entry_points


def container_runtime() -> bool:
    """A docker CLI whose daemon answers (the CLI alone, without a daemon, builds nothing)."""
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not container_runtime(), reason="no container runtime on this machine")
@pytest.mark.timeout(900)
def test_the_image_builds_and_serves(tmp_path: Path) -> None:  # pragma: no cover - needs docker
    tag = "connector-manager:test"
    subprocess.run(["docker", "build", "-t", tag, str(REPO)], check=True, timeout=800)
    port = free_port()
    container = subprocess.run(
        ["docker", "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8088", tag], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        subprocess.run(
            ["docker", "exec", container, "connector-manager", "wait", "--url", "http://127.0.0.1:8088"], check=True
        )
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/health").status_code == 200
        user = subprocess.run(["docker", "exec", container, "id", "-u"], capture_output=True, text=True, check=True)
        assert user.stdout.strip() != "0"
    finally:
        subprocess.run(["docker", "stop", container], check=False)
