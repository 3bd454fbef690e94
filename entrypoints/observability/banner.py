"""The start-up banner: one record saying which backends this process uses, where its data
lives, where its keys come from, and, when a master key was just made, that it must be backed
up (the database cannot be read without it)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from entrypoints.service_secrets import KEYRING_FILE
from entrypoints.settings import Settings

log = logging.getLogger("connector_manager")

__all__ = ["key_source", "log_banner"]


def key_source(settings: Settings, env: Mapping[str, str]) -> str:
    """Where the keyring comes from, as :func:`~entrypoints.service_secrets.load_keyring` decides
    (names only, never a key)."""
    if env.get("CM_ENCRYPTION_KEYS"):
        return "CM_ENCRYPTION_KEYS"
    if env.get("CM_MASTER_KEY"):
        return "CM_MASTER_KEY"
    if settings.storage == "memory" and settings.secrets == "memory":
        return "generated in memory (nothing is kept)"
    return str((settings.data_dir / KEYRING_FILE).resolve())


def key_file_missing(settings: Settings, env: Mapping[str, str]) -> bool:
    """True when starting now will generate ``master.key`` (call it before the container is built)."""
    source = key_source(settings, env)
    return source.endswith(KEYRING_FILE) and not (settings.data_dir / KEYRING_FILE).exists()


def log_banner(process: str, settings: Settings, env: Mapping[str, str], *, key_generated: bool, **extra: Any) -> None:
    """One record: ``process`` (serve, worker), the backends, the data dir and the keys."""
    fields: dict[str, Any] = {
        "process": process,
        "storage": settings.storage,
        "secrets": settings.secrets,
        "events": settings.events,
        "cache": settings.cache,
        "locks": settings.locks,
        "data_dir": str(settings.data_dir.resolve()),
        "keys": key_source(settings, env),
        "master_key_generated": key_generated,
        **extra,
    }
    described = " ".join(f"{k}={fields[k]}" for k in ("storage", "secrets", "events", "cache", "locks"))
    message = f"{process} starting: {described}; data dir {fields['data_dir']}; keys from {fields['keys']}"
    if key_generated:
        message += (
            f"; a NEW MASTER KEY was generated at {fields['keys']}: back it up now, with the database"
            " (nothing stored can be read without it)"
        )
        log.warning(message, extra={"fields": fields})
    else:
        log.info(message, extra={"fields": fields})
