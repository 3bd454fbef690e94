"""``connector-manager keys status|rotate|export``: the keyring, rotating it, and printing it
(key material, only when asked) as a ``CM_ENCRYPTION_KEYS`` value.

Rotation adds a new primary key to ``master.key`` (processes on the data dir follow it at their
next seal or open: :class:`~adapters.crypto.KeyFile`), then re-encrypts every secret of the
secret store, all token material and every pending OAuth state under it, each value with a
compare-and-swap, in passes until nothing is left under an older key (a writer that sealed with
the old key just before the switch is caught by the next pass). A crash leaves values under both
keys, all readable: running ``keys rotate`` again finishes that rotation before it starts
another. With keys from the environment (``CM_ENCRYPTION_KEYS``) the new key is put first there
(every process, restarted), and ``keys rotate`` re-encrypts.

Token material sealed again also names its record's org and connector: material sealed before it
did (bound to its record id only) is bound then, unless its record does not agree with itself on
them (:mod:`adapters.token_binding`), which is named as damaged and left as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any

from adapters.crypto import EncryptedKeyValueStore, KeyFile, Keyring
from adapters.factories.sections import LOCKS_PREFIX
from adapters.sealing import LEGACY, UNREADABLE, Census
from adapters.token_binding import RECORD_ID_ONLY
from connector_core.errors import ValidationError
from entrypoints.bootstrap import Container
from entrypoints.cli.data_dir import require_initialised
from entrypoints.cli.options import add_settings_options
from entrypoints.cli.output import Advance, Output, add_output_options
from entrypoints.cli.rotation_lock import rotation_lock
from entrypoints.cli.runtime import opened
from entrypoints.service_secrets import KEYRING_FILE, load_keyring
from entrypoints.settings import Settings

#: everything in the secret store (the connectors' secrets, the API's signing secrets, settings)
SECRETS_PREFIX = "/"
#: what shares the secret store's keyspace but holds no secret, left out of the census and the
#: re-encryption: the etcd lease locks (``locks = "etcd"``; plain values, among them this
#: rotation's own lock and the leases workers hold)
NOT_SECRETS = (LOCKS_PREFIX,)
#: passes of a rotation before it gives up (each only finds what writers sealed meanwhile)
MAX_PASSES = 5


def register(commands: argparse._SubParsersAction[Any]) -> None:
    group = commands.add_parser(
        "keys",
        help="the encryption keys: what is sealed under which, and rotating them",
        description="The keyring that encrypts everything at rest (master.key, or CM_ENCRYPTION_KEYS).",
    )
    sub = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser(
        "status",
        help="the keys, which is primary, and how many values each one seals",
        description="Show the keyring (key ids only, never a key) and count the sealed values by key id.",
    )
    add_settings_options(p)
    add_output_options(p)
    p.set_defaults(run=_status)
    p = sub.add_parser(
        "rotate",
        help="add a new primary key and re-encrypt every secret, token and OAuth state under it",
        description="Add a new primary key to master.key and re-encrypt everything under it (safe while serve"
        " and workers run; run it again after a crash to finish). With keys from CM_ENCRYPTION_KEYS, put the"
        " new key first there and this re-encrypts.",
    )
    add_settings_options(p)
    p.add_argument("--dry-run", action="store_true", help="count what a rotation would re-encrypt; change nothing")
    add_output_options(p)
    p.set_defaults(run=_rotate)
    p = sub.add_parser(
        "export",
        help="print the keyring as a CM_ENCRYPTION_KEYS value (key material: only with --print-keys)",
        description="Print the keyring in use (master.key, CM_MASTER_KEY or CM_ENCRYPTION_KEYS) as one"
        " CM_ENCRYPTION_KEYS value, primary first: to move the keys into a secret manager, or from"
        " CM_MASTER_KEY to CM_ENCRYPTION_KEYS (to rotate them). This prints every key: it does so only"
        " with --print-keys, to stdout alone; redirect it straight into your secret manager.",
    )
    add_settings_options(p)
    p.add_argument("--print-keys", action="store_true", help="yes, print the key material of every key to stdout")
    p.set_defaults(run=_export)


def _key_file(settings: Settings) -> KeyFile | None:
    """``master.key`` when that is where the keys come from (not the environment)."""
    if os.environ.get("CM_ENCRYPTION_KEYS") or os.environ.get("CM_MASTER_KEY"):
        return None
    return KeyFile(settings.data_dir / KEYRING_FILE, legacy_secret=os.environ.get("CM_LEGACY_SECRET_KEY") or None)


def _secrets(container: Container) -> EncryptedKeyValueStore:
    store = container.secrets_store
    assert isinstance(store, EncryptedKeyValueStore)  # the composition root always encrypts it
    return store


async def _census(container: Container) -> Census:
    census = await container.storage.sealed.census()
    secrets = await _secrets(container).census(SECRETS_PREFIX, exclude=NOT_SECRETS)
    return {"secrets": secrets, **census} if secrets else dict(census)


def _not_under(census: Census, primary: str) -> int:
    return sum(n for by_key in census.values() for key_id, n in by_key.items() if key_id != primary)


def _pending(census: Census, ring: Keyring) -> int:
    """Values a rotation to the primary key can still re-encrypt: under another key of ``ring``,
    or in the old format when ``ring`` has the legacy secret. Never a value in neither format, nor
    one under a key ``ring`` does not hold: no rotation can move those, so they do not make a
    rotation look unfinished (the rotation names them as damaged)."""
    movable = {key_id for key_id in ring.key_ids if key_id != ring.primary_id}
    if ring.has_legacy:
        movable.add(LEGACY)
    return sum(n for by_key in census.values() for key_id, n in by_key.items() if key_id in movable)


def _unreadable(census: Census) -> int:
    return sum(by_key.get(UNREADABLE, 0) for by_key in census.values())


def _total(census: Census) -> int:
    return sum(n for by_key in census.values() for n in by_key.values())


def _state(container: Container, settings: Settings) -> dict[str, Any]:
    ring = container.infrastructure.aead.keyring
    return {
        "source": str(settings.data_dir / KEYRING_FILE) if _key_file(settings) else "environment",
        "primary": ring.primary_id,
        "keys": list(ring.key_ids),
        "legacy": ring.has_legacy,
    }


def _status(args: argparse.Namespace, settings: Settings) -> int:
    async def work() -> dict[str, Any]:
        async with opened(settings) as container:
            state = _state(container, settings)
            census = await _census(container)
            pending = _pending(census, container.infrastructure.aead.keyring)
            binding = await container.storage.sealed.token_bindings()
        return {
            **state,
            "sealed": census,
            "notUnderPrimary": pending,
            "unreadable": _unreadable(census),
            "tokenBindings": binding,
            "tokensBoundToIdOnly": binding.get(RECORD_ID_ONLY, 0),
        }

    found = asyncio.run(work())
    rows = [[store, key_id, n] for store, by_key in found["sealed"].items() for key_id, n in sorted(by_key.items())]
    out = Output.of(args)
    out.table(["store", "key", "values"], rows, data=found, title=f"primary key {found['primary']}")
    if not out.as_json:
        out.line(f"keys: {', '.join(found['keys'])} (primary {found['primary']}, from {found['source']})")
        if found["notUnderPrimary"]:
            out.line(f"{found['notUnderPrimary']} values are under an older key: `keys rotate` finishes that")
        if found["unreadable"]:
            out.line(
                f"{found['unreadable']} values are in no encrypted format (damaged, or not written by"
                " connector-manager): `keys rotate` names them and leaves them as they are"
            )
        if found["tokensBoundToIdOnly"]:
            out.line(
                f"{found['tokensBoundToIdOnly']} token records were sealed before their material named their org and"
                " connector and not saved since: `keys rotate` binds them"
            )
    return 0


async def _reseal(container: Container, advance: Advance, damaged: Callable[[str], None]) -> int:
    moved = await _secrets(container).rewrap_all(SECRETS_PREFIX, advance, damaged, exclude=NOT_SECRETS)
    return moved + await container.storage.sealed.reseal(advance, damaged)


def _rotate(args: argparse.Namespace, settings: Settings) -> int:
    out = Output.of(args)

    async def work() -> dict[str, Any]:
        async with opened(settings) as container:
            if args.dry_run:
                return await rotation(container)
            async with rotation_lock(container.infrastructure.lock):
                return await rotation(container)

    async def rotation(container: Container) -> dict[str, Any]:
        aead = container.infrastructure.aead
        census = await _census(container)
        left = _pending(census, aead.keyring)
        resuming = left > 0
        key_file = _key_file(settings)
        if not resuming and key_file is None:
            raise ValidationError.for_field(
                "CM_ENCRYPTION_KEYS",
                f"every value is under the primary key {aead.keyring.primary_id}: to rotate, put a new key"
                " first in CM_ENCRYPTION_KEYS of every process, restart them, and run `keys rotate` again",
            )
        to_touch = left if resuming else _total(census)
        plan = {
            "resuming": resuming,
            "from": aead.keyring.primary_id,
            "valuesToReencrypt": to_touch,
            "sealed": census,
        }
        if args.dry_run:
            bindings = await container.storage.sealed.token_bindings()
            return {**plan, "tokensToBind": bindings.get(RECORD_ID_ONLY, 0)}
        if not resuming:
            assert key_file is not None
            key_file.rotate()  # every process on this data dir follows from its next seal or open
        primary = aead.keyring.primary_id
        moved = 0
        # a value that cannot be decrypted is left as it was and named (its path, never its
        # value); the rest is still re-encrypted
        damaged: set[str] = set()
        with out.progress(f"re-encrypting under {primary}", to_touch) as advance:
            for _ in range(MAX_PASSES):
                moved += await _reseal(container, advance, damaged.add)
                census = await _census(container)
                if _not_under(census, primary) <= len(damaged):
                    break
        left = max(0, _not_under(census, primary) - len(damaged))
        unbound = (await container.storage.sealed.token_bindings()).get(RECORD_ID_ONLY, 0)  # those refused
        return {**plan, "primary": primary, "reencrypted": moved, "sealed": census, "notUnderPrimary": left,
                "damaged": len(damaged), "damagedPaths": sorted(damaged), "tokensBoundToIdOnly": unbound}  # fmt: skip

    done = asyncio.run(work())
    if out.as_json:
        out.json(done)
    elif args.dry_run:
        what = "finish the rotation to the primary key" if done["resuming"] else "add a new primary key"
        bind = (
            f", binding {done['tokensToBind']} token records to their org and connector" if done["tokensToBind"] else ""
        )
        out.line(f"dry run: would {what} and re-encrypt {done['valuesToReencrypt']} values{bind}")
    else:
        out.line(
            f"keys rotate: primary key is now {done['primary']}; {done['reencrypted']} values re-encrypted"
            + (f"; {done['notUnderPrimary']} still under an older key: run it again" if done["notUnderPrimary"] else "")
        )
        if done["damaged"]:
            out.line(
                f"{done['damaged']} values could not be decrypted (damaged, or under a key no longer in the"
                " keyring), or are token records whose columns, metadata and material do not name the same org"
                " and connector, and were left as they were: " + ", ".join(done["damagedPaths"])
            )
    return 0 if args.dry_run or not (done["notUnderPrimary"] or done["damaged"]) else 1


def _export(args: argparse.Namespace, settings: Settings) -> int:
    if not args.print_keys:
        raise ValidationError.for_field(
            "--print-keys",
            "`keys export` prints every encryption key (key material) to stdout: run it again with"
            " --print-keys, its output redirected into your secret manager (never a file kept around,"
            " a log or a ticket)",
        )
    env = os.environ
    if not (env.get("CM_ENCRYPTION_KEYS") or env.get("CM_MASTER_KEY")):
        if settings.storage == "memory" and settings.secrets == "memory":
            raise ValidationError.for_field("storage", "nothing is kept with storage and secrets in memory: no keys")
        require_initialised(settings)  # never makes a master.key: a typo in --data-dir is refused
    source = load_keyring(settings, env)
    ring = source if isinstance(source, Keyring) else source.current()
    print(
        f"connector-manager keys export: the output is the key material of {', '.join(ring.key_ids)}"
        f" (primary {ring.primary_id}), as CM_ENCRYPTION_KEYS: keep it only in your secret manager."
        + (" CM_LEGACY_SECRET_KEY is not part of it: keep setting it." if ring.has_legacy else ""),
        file=sys.stderr,
    )
    sys.stdout.write(ring.to_spec() + "\n")
    sys.stdout.flush()
    return 0
