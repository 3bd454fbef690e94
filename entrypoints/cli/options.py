"""What several commands share: the settings options and the settings they select."""

from __future__ import annotations

import argparse
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


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    """Defaults ← settings file ← ``CM_*`` environment ← the command's options."""
    return load_settings(
        getattr(args, "config", None),
        data_dir=getattr(args, "data_dir", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        **extra,
    )
