"""The public surface of connector_core, and its independence from adapters and drivers."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import connector_core

REPO_ROOT = Path(__file__).resolve().parents[2]


def _forbidden_for_the_core() -> tuple[str, ...]:
    """The import-linter contract's list: one list, kept in pyproject.toml."""
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (contract,) = [
        c
        for c in config["tool"]["importlinter"]["contracts"]
        if c["type"] == "forbidden" and c["source_modules"] == ["connector_core"]
    ]
    return tuple(contract["forbidden_modules"])


FORBIDDEN = _forbidden_for_the_core()


def _is_constant(name: str) -> bool:
    return name.isupper()


def test_every_name_in_all_exists() -> None:
    missing = [name for name in connector_core.__all__ if not hasattr(connector_core, name)]
    assert missing == []


def test_all_is_unique_and_sorted_apart_from_constants() -> None:
    names = list(connector_core.__all__)
    assert len(names) == len(set(names))
    constants = [n for n in names if _is_constant(n)]
    others = [n for n in names if not _is_constant(n)]
    # Constants come first, then everything else in sorted order.
    assert names == constants + others
    assert constants == sorted(constants)
    assert others == sorted(others)


def test_all_covers_the_main_domain_types() -> None:
    for name in (
        "Connector",
        "ConnectorConfig",
        "TokenSet",
        "TokenLifecycle",
        "TokenRecord",
        "RefreshPolicy",
        "ScopeMapper",
        "Catalog",
        "load_default_catalog",
        "classify_token_error",
        "ConnectorManagerError",
        "ValidationError",
    ):
        assert name in connector_core.__all__, name


def test_importing_connector_core_loads_no_adapter_driver_or_framework() -> None:
    script = (
        "import importlib, json, pkgutil, sys\n"
        "import connector_core\n"
        "for m in pkgutil.walk_packages(connector_core.__path__, 'connector_core.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert "connector_core" in loaded
    assert "connector_core.ports.token_store" in loaded  # every submodule was imported
    offending = sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN)
    assert offending == []
