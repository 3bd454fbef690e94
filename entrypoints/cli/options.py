"""What several commands share: the settings options and the settings they select."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from entrypoints.settings import Settings, load_settings


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
