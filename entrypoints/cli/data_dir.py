"""The data dir a command works on, checked before anything is opened or written.

``serve`` (and ``token --init``) make a new deployment in a data dir that holds none. Every
other command works on an existing one, so a data dir that does not exist, or holds no
deployment, is refused: a typo in ``--data-dir`` would otherwise get new keys and an empty
database, and work on nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from entrypoints.service_secrets import KEYRING_FILE
from entrypoints.settings import Settings, SettingsError

#: what the refusal of a missing deployment says to do
_HOW = (
    "check --data-dir (or CM_DATA_DIR); `connector-manager serve --data-dir DIR` creates a deployment"
    " on its first start"
)


def kept_files(settings: Settings, env: Mapping[str, str]) -> list[Path]:
    """The files of the data dir this deployment keeps: the keyring unless the keys come from the
    environment, the SQLite database when storage or secrets are on SQLite (none in memory)."""
    if settings.storage == "memory" and settings.secrets == "memory":
        return []
    files: list[Path] = []
    if not (env.get("CM_ENCRYPTION_KEYS") or env.get("CM_MASTER_KEY")):
        files.append(settings.data_dir / KEYRING_FILE)
    if "sqlite" in (settings.storage, settings.secrets):
        files.append(settings.database_path)
    return files


def require_initialised(settings: Settings, env: Mapping[str, str] | None = None, *, init: bool = False) -> None:
    """Refuse a data dir the service never ran on (it does not exist, or a file the deployment
    keeps there is missing), before anything is written. ``init``: the command has ``--init``,
    and the refusal says so."""
    env = os.environ if env is None else env
    files = kept_files(settings, env)
    if not files:
        return
    how = _HOW + (", or pass --init to create it here" if init else "")
    data_dir = settings.data_dir
    if not _exists(data_dir):
        raise SettingsError.for_field("data_dir", f"{data_dir} does not exist (never initialised): {how}")
    if not data_dir.is_dir():
        raise SettingsError.for_field("data_dir", f"{data_dir} is not a directory: {how}")
    missing = [p for p in files if not _exists(p)]
    if missing:
        raise SettingsError.for_field(
            "data_dir", f"{data_dir} was never initialised ({missing[0].name} is missing): {how}"
        )


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; a failure to tell (no permission) is raised, not taken as missing."""
    try:
        path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True
