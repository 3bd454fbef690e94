"""The keys of a deployment: the keyring that encrypts everything at rest (``master.key`` or the
environment) and the API's signing secrets (generated once, kept encrypted in the secret store).

Several processes may start together on one fresh data directory or one fresh secret store;
they end with one keyring and one set of signing secrets:

- ``master.key`` is written to a private temporary file and *linked* into place, so it appears
  with its whole content or not at all; whoever links second reads the winner's file.
- the signing secrets are stored with a compare-and-swap on revision 0; whoever loses re-reads
  the winner's secrets and never uses secrets it did not store.
"""

from __future__ import annotations

import json
import logging
import os
import secrets as pysecrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from adapters.crypto import KeyFile, Keyring
from connector_core.errors import Conflict, CryptoError, Unavailable
from connector_core.ports.kv_store import KeyValueStore
from connector_core.services.importing import ImportOutcome, ImportResult
from entrypoints.settings import Settings, SettingsError

SECRET_KEYS_PATH = "/services/secretKeys"
KEYRING_FILE = "master.key"
#: compare-and-swap rounds before start-up gives up (each lost round means another writer won)
_STORE_ATTEMPTS = 5
#: a CM_MASTER_KEY shorter than this is accepted, with a warning at start-up
MASTER_KEY_MIN_LENGTH = 32

log = logging.getLogger("connector_manager")


class ServiceSecrets:
    """Signing secrets of the API. Never printed (a plain class, so no pretty-printer that
    walks attrs fields can show them either)."""

    __slots__ = ("cookie_secret", "jwt_secret", "scoped_jwt_secret")

    def __init__(self, jwt_secret: str, scoped_jwt_secret: str, cookie_secret: str) -> None:
        self.jwt_secret = jwt_secret
        self.scoped_jwt_secret = scoped_jwt_secret
        self.cookie_secret = cookie_secret

    def __repr__(self) -> str:
        return "ServiceSecrets(<hidden>)"


def load_keyring(settings: Settings, env: Mapping[str, str]) -> Keyring | KeyFile:
    """From ``CM_ENCRYPTION_KEYS`` or ``CM_MASTER_KEY``; else ``data_dir/master.key``, made on
    the first start (a throwaway keyring when nothing is kept at all)."""
    legacy = env.get("CM_LEGACY_SECRET_KEY") or None
    if env.get("CM_ENCRYPTION_KEYS"):
        return Keyring.parse(env["CM_ENCRYPTION_KEYS"], legacy_secret=legacy)
    if env.get("CM_MASTER_KEY"):
        return Keyring.from_master_secret(env["CM_MASTER_KEY"], legacy_secret=legacy)
    if settings.storage == "memory" and settings.secrets == "memory":
        return Keyring.generate(legacy_secret=legacy)
    path = settings.data_dir / KEYRING_FILE
    read_or_create_secret_file(path, lambda: Keyring.generate().to_spec())
    # followed when `connector-manager keys rotate` (another process) writes a new primary key
    return KeyFile(path, legacy_secret=legacy)


def warn_if_short_master_key(env: Mapping[str, str]) -> None:
    """A WARNING when the keyring comes from a ``CM_MASTER_KEY`` shorter than
    :data:`MASTER_KEY_MIN_LENGTH` (never the key, nor its length): the one key is derived from it
    alone, so a short or guessable one weakens everything stored. It is still used."""
    master = env.get("CM_MASTER_KEY")
    if env.get("CM_ENCRYPTION_KEYS") or not master or len(master) >= MASTER_KEY_MIN_LENGTH:
        return
    log.warning(
        "CM_MASTER_KEY is shorter than %d characters: the encryption key is derived from it alone, so a"
        " short or guessable one weakens everything stored; use a random key of 32 bytes or more"
        " (e.g. `openssl rand -base64 32`), or move to CM_ENCRYPTION_KEYS (`connector-manager keys"
        " export`; docs/operations.md, Key rotation)",
        MASTER_KEY_MIN_LENGTH,
    )


def read_or_create_secret_file(path: Path, make: Callable[[], str]) -> str:
    """The content of a 0600 file, which is created with ``make()`` when missing. Created whole
    or not at all: concurrent creators agree on the first one linked into place."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        draft = path.with_name(f".{path.name}.{os.getpid()}.{pysecrets.token_hex(8)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(make() + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(draft, path)  # atomic, and refuses to replace a file another process linked
            except FileExistsError:
                pass
        finally:
            draft.unlink(missing_ok=True)
    if path.stat().st_mode & 0o077:
        raise SettingsError.for_field("data_dir", f"{path} must not be readable by others (chmod 600)")
    return path.read_text(encoding="utf-8").strip()


async def load_service_secrets(store: KeyValueStore, env: Mapping[str, str]) -> ServiceSecrets:
    """From the environment, else from ``/services/secretKeys`` (encrypted), generated once."""
    stored = await _stored_secrets(store)
    secrets = ServiceSecrets(
        jwt_secret=env.get("CM_JWT_SECRET") or stored["jwtSecret"],
        scoped_jwt_secret=env.get("CM_SCOPED_JWT_SECRET") or stored["scopedJwtSecret"],
        cookie_secret=stored.get("cookieSecret", ""),
    )
    if secrets.jwt_secret == secrets.scoped_jwt_secret:
        # one secret for both would let a user token pass as a service token and back
        raise SettingsError.for_field("CM_SCOPED_JWT_SECRET", "must differ from the user token secret")
    return secrets


async def _stored_secrets(store: KeyValueStore) -> dict[str, Any]:
    """The stored secrets; when there are none, new ones stored with a compare-and-swap. A lost
    swap (:class:`Conflict`: another process stored first) reads again."""
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Conflict), stop=stop_after_attempt(_STORE_ATTEMPTS), reraise=True
        ):
            with attempt:
                return await _read_or_store_once(store)
    except Conflict:
        raise Unavailable(f"{SECRET_KEYS_PATH} keeps changing in the secret store; start again") from None
    raise AssertionError("unreachable: the retry loop returns or raises")  # pragma: no cover


async def _read_or_store_once(store: KeyValueStore) -> dict[str, Any]:
    try:
        found = await store.get(SECRET_KEYS_PATH)
    except CryptoError:
        raise SettingsError.for_field(
            "CM_MASTER_KEY",
            f"cannot decrypt {SECRET_KEYS_PATH}: this process has another keyring than the one that wrote it",
        ) from None
    if found is not None:
        data: dict[str, Any] = json.loads(found.value)
        return data
    fresh = {name: pysecrets.token_urlsafe(48) for name in ("jwtSecret", "scopedJwtSecret", "cookieSecret")}
    await store.put(SECRET_KEYS_PATH, json.dumps(fresh), expected_revision=0)  # Conflict: lost the race
    return fresh


_SECRET_NAMES = ("jwtSecret", "scopedJwtSecret", "cookieSecret")


async def adopt_service_secrets(
    store: KeyValueStore, existing: Mapping[str, str] | None, *, dry_run: bool = False
) -> ImportResult:
    """Take the existing deployment's signing secrets as ours, so the tokens it signed (and its
    services still sign) are accepted. Only into a store that has none yet (compare-and-swap on
    revision 0): secrets this deployment already uses are never replaced."""
    item = f"{SECRET_KEYS_PATH} (the API's signing secrets)"
    if not existing:
        return ImportResult(item, ImportOutcome.SKIPPED, "the existing deployment has none")
    wanted = {name: existing[name] for name in _SECRET_NAMES if existing.get(name)}
    if "jwtSecret" not in wanted or "scopedJwtSecret" not in wanted:
        return ImportResult(item, ImportOutcome.FAILED, "jwtSecret or scopedJwtSecret is missing there")
    found = await store.get(SECRET_KEYS_PATH)
    if found is not None:
        if json.loads(found.value) == wanted:
            return ImportResult(item, ImportOutcome.SKIPPED, "already here (imported before)")
        return ImportResult(
            item,
            ImportOutcome.FAILED,
            "this deployment already has signing secrets of its own (it was started before the import);"
            " tokens the existing service signed are refused until CM_JWT_SECRET and CM_SCOPED_JWT_SECRET"
            " are set to its secrets",
        )
    if dry_run:
        return ImportResult(item, ImportOutcome.WOULD_IMPORT)
    try:
        await store.put(SECRET_KEYS_PATH, json.dumps(wanted), expected_revision=0)
    except Conflict:
        return ImportResult(item, ImportOutcome.FAILED, "created here meanwhile by a starting process; run again")
    return ImportResult(item, ImportOutcome.IMPORTED)
