"""A keyring kept in a file (``k2:KEY,k1:KEY``, primary first), read again whenever the file
changes, and rotated in place.

Every process of a deployment on one data dir (``serve``, workers, the CLI) reads the same
``master.key``. When ``connector-manager keys rotate`` writes a new primary key into it, the
others follow on their next seal or open: a seal then uses the new key, and an open of a value
sealed with it finds it. The file is replaced whole (a temporary file, fsync, rename), so a
reader sees the old keyring or the new one, never half of one.
"""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path
from typing import Protocol

from adapters.crypto.keyring import Keyring


class KeyringSource(Protocol):
    def current(self) -> Keyring:
        """The keyring to use now."""
        ...


class KeyFile:
    """The keyring of a file, re-read when the file changes (checked with one ``stat`` per use)."""

    def __init__(self, path: Path, *, legacy_secret: str | bytes | None = None) -> None:
        self.path = path
        self._legacy = legacy_secret
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._ring: Keyring | None = None
        self.current()  # a missing or malformed file fails here, at start-up

    def _read(self) -> Keyring:
        return Keyring.parse(self.path.read_text(encoding="utf-8").strip(), legacy_secret=self._legacy)

    def current(self) -> Keyring:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            if self._ring is None:
                raise
            return self._ring  # removed under us: keep what we have rather than fail every call
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp or self._ring is None:
            with self._lock:
                if stamp != self._stamp or self._ring is None:
                    self._ring, self._stamp = self._read(), stamp
        return self._ring

    def rotate(self) -> Keyring:
        """Add a new random key as the primary (the old ones stay readable) and store the ring."""
        ring = self.current()
        taken = set(ring.key_ids)
        number = len(taken) + 1
        while f"k{number}" in taken:
            number += 1
        rotated = ring.rotated(f"k{number}")
        draft = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(8)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(rotated.to_spec() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(draft, self.path)
        finally:
            draft.unlink(missing_ok=True)
        return self.current()

    def __repr__(self) -> str:
        return f"KeyFile({str(self.path)!r})"
