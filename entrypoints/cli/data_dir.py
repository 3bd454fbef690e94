"""The data dir a command works on, checked before anything is opened or written.

``serve`` (and ``token --init``) make a new deployment in a data dir that holds none. Every
other command works on an existing one, so a data dir that does not exist, or holds no
deployment, is refused: a typo in ``--data-dir`` would otherwise get new keys and an empty
database, and work on nothing. The processes that write (``serve``, ``worker``) also refuse a
data dir they cannot use, naming the path and the operating system's reason, instead of failing
somewhere inside a driver.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from entrypoints.service_secrets import KEYRING_FILE
from entrypoints.settings import Settings, SettingsError
from entrypoints.start_failure import CouldNotStart

#: what the refusal of a missing deployment says to do
_HOW = (
    "check --data-dir (or CM_DATA_DIR); `connector-manager serve --data-dir DIR` creates a deployment"
    " on its first start"
)
#: what the refusal of a data dir this process cannot use says to do
_FIX = "give this user access to it, or choose another data dir with --data-dir or CM_DATA_DIR"


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


def require_usable(settings: Settings, env: Mapping[str, str] | None = None, *, create: bool = False) -> None:
    """Refuse a data dir this process cannot read and write (:class:`CouldNotStart`, naming the
    path and the OS's reason); ``create``: make it when it does not exist (the first ``serve``)."""
    env = os.environ if env is None else env
    files = kept_files(settings, env)
    if not files:
        return
    data_dir = settings.data_dir
    try:
        if create and not os.path.lexists(data_dir):
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise CouldNotStart.from_os_error(f"cannot create the data dir {data_dir}", exc, _FIX) from None
    try:
        if not data_dir.is_dir():
            raise CouldNotStart(
                f"the data dir {data_dir} is not a directory: choose one with --data-dir or CM_DATA_DIR"
            )
        with tempfile.TemporaryFile(dir=data_dir):  # a new file there: master.key, the database's log
            pass
    except OSError as exc:
        raise CouldNotStart.from_os_error(f"cannot write in the data dir {data_dir}", exc, _FIX) from None
    for path, flags in _opened(settings, files):
        try:
            os.close(os.open(path, flags))
        except FileNotFoundError:  # made on the first start
            continue
        except OSError as exc:
            doing = "read" if flags == os.O_RDONLY else "write"
            raise CouldNotStart.from_os_error(f"cannot {doing} {path}", exc, _FIX) from None


def _opened(settings: Settings, files: list[Path]) -> list[tuple[Path, int]]:
    """Each kept file and how this process opens it: the keyring to read, the SQLite database
    and the files of its write-ahead log to read and write."""
    database = settings.database_path
    opened = [(path, os.O_RDONLY) for path in files if path != database]
    if database in files:
        opened += [(database.with_name(database.name + end), os.O_RDWR) for end in ("", "-wal", "-shm")]
    return opened


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; a failure to tell (no permission) is refused, not taken as missing."""
    try:
        path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise CouldNotStart.from_os_error(f"cannot read {path}", exc, _FIX) from None
    return True
