"""What several commands share: the settings options and the settings they select."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from entrypoints.service_secrets import KEYRING_FILE
from entrypoints.settings import Settings, SettingsError, load_settings


def add_settings_options(p: argparse.ArgumentParser) -> None:
    """``--config`` and ``--data-dir``: which deployment the command works on."""
    p.add_argument("--config", type=Path, metavar="FILE", help="settings file (TOML); default: $CM_CONFIG_FILE")
    p.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="where the embedded database and keys live (default: .data, or $CM_DATA_DIR)",
    )


def nonblank(value: str) -> str:
    """An argparse ``type`` for an id (org, user, e-mail): a blank one (``--org "$ORG"`` with ORG
    unset) is refused before anything is read or written, never taken as "none given"."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty (was a variable unset?)")
    return value.strip()


def seconds(value: str) -> float:
    """An argparse ``type`` for a duration: a finite number of seconds above 0 (``nan`` waited
    for ever, a negative interval made a busy loop)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds") from None
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError("must be a finite number of seconds above 0")
    return number


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    """Defaults ← settings file ← ``CM_*`` environment ← the command's options."""
    return load_settings(
        getattr(args, "config", None),
        data_dir=getattr(args, "data_dir", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        metrics_port=getattr(args, "metrics_port", None),
        **extra,
    )


def require_initialised(settings: Settings, env: Mapping[str, str] | None = None) -> None:
    """Refuse a data dir the service never ran on (a typo would otherwise get new keys, and
    tokens or answers that the real deployment does not know), before anything is written."""
    env = os.environ if env is None else env
    if settings.storage == "memory" and settings.secrets == "memory":
        return
    needed: list[Path] = []
    if not (env.get("CM_ENCRYPTION_KEYS") or env.get("CM_MASTER_KEY")):
        needed.append(settings.data_dir / KEYRING_FILE)
    if "sqlite" in (settings.storage, settings.secrets):
        needed.append(settings.database_path)
    missing = [p for p in needed if not p.exists()]
    if missing:
        raise SettingsError.for_field(
            "data_dir",
            f"{settings.data_dir} was never initialised ({missing[0].name} is missing): check --data-dir"
            " (or CM_DATA_DIR), start `connector-manager serve` there once, or pass --init to create it",
        )
