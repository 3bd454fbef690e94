"""The README as a new user meets it: its two set-up commands, and its walkthrough pasted into a
shell on a fresh copy of the repository (a new ``.venv`` holding only what serving needs, a new
data dir, a free port). The shell blocks are read from the README itself, so it cannot rot."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def shell_blocks(markdown: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", markdown, flags=re.S)]


def test_the_readme_has_exactly_two_set_up_commands_and_ci_runs_the_test_one() -> None:
    assert shell_blocks(section("The two commands")) == ["./scripts/serve", "./scripts/test"]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    commands = [
        line
        for line in ci.splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "set ", "cd ", "export "))
    ]
    assert commands == ["exec bash scripts/test"]


def fresh_copy(destination: Path) -> Path:
    """The repository as a clone has it: tracked and new files, nothing ignored (no .venv,
    no .data, no caches)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_walkthrough_runs_as_written_on_a_fresh_copy(tmp_path: Path) -> None:
    clone = fresh_copy(tmp_path / "clone")
    script = "\n".join(shell_blocks(section("A first minute with the API")))
    assert script.startswith("./scripts/serve --background") and script.endswith("./scripts/serve --stop")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["CM_PORT"] = str(free_port())
    try:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=540,
            check=False,
        )
    finally:  # whatever happened, nothing stays running
        pidfile = clone / ".data" / "serve.pid"
        if pidfile.exists():
            subprocess.run(["kill", pidfile.read_text().strip()], check=False)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"

    # the install said what it did in a line and a progress indication, not pages of warnings
    assert done.stderr.startswith("Installing what serving needs into .venv"), done.stderr[:500]
    assert len(done.stderr.splitlines()) <= 3, done.stderr
    # only what serving needs: no development or test tool, no backend driver
    bin_dir = clone / ".venv" / "bin"
    assert (bin_dir / "connector-manager").exists()
    for tool in ("pytest", "mypy", "ruff", "lint-imports"):
        assert not (bin_dir / tool).exists(), tool
    # what each step answered
    out = done.stdout
    assert f"serving on http://127.0.0.1:{env['CM_PORT']}" in out
    assert '"hasApiToken":true' in out.replace(" ", "")
    assert '"authorizationUrl"' in out
    assert '"eventType":"appEnabled"' in out.replace(" ", "")
    assert '"apiToken":"…"' in out  # the credentials of the API-token connector, for its org
    assert '"status":"healthy"' in out.replace(" ", "")
    assert "Confluence: disabled" in out
    assert out.rstrip().endswith(")") and "stopped (pid" in out
    assert not (clone / ".data" / "serve.pid").exists()
