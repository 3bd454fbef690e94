"""What a configuration save does to a connector's stored secrets.

A secret given is stored, one left out is kept, one given as ``None`` (JSON ``null``) is
removed; and a connector keeps only the secrets of its auth type: switching Jira from OAuth
to an API token drops the OAuth client secret in the same save, so it can never be handed out
with the API token (:func:`connector_core.services.credentials.stored_credentials`).

Order (the pairing rule of :meth:`ConnectorService.update_configuration`): the secrets the new
configuration names are written before its commit, never removing one, so a stored
configuration never names a missing secret; those it no longer names are removed after the
commit. A removal that fails leaves a value no configuration names: readers use only the secrets
the configuration names (:func:`connector_core.services.context.read_secrets`), and the next
save removes it."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from connector_core.catalog import CatalogEntry
from connector_core.errors import Conflict, Unavailable
from connector_core.ports.kv_store import Versioned
from connector_core.services.context import ServiceContext

__all__ = ["SecretEdit", "decode_secrets", "remove_unnamed", "restore_secrets"]

log = logging.getLogger(__name__)


@frozen
class SecretEdit:
    """The secret fields of one ``PUT /config`` body (dotted paths: ``auth.clientSecret``)."""

    #: secrets given a value
    given: Mapping[str, str] = field(repr=False)
    #: secrets given as ``None``: remove the stored one
    removed: frozenset[str]

    @classmethod
    def split(cls, entry: CatalogEntry, auth: Mapping[str, Any]) -> tuple[SecretEdit, dict[str, Any]]:
        """The secrets of ``auth`` and the rest of it (the plain fields)."""
        secret = set(entry.secret_fields)
        given = {f"auth.{k}": str(v) for k, v in auth.items() if f"auth.{k}" in secret and v is not None}
        removed = frozenset(f"auth.{k}" for k, v in auth.items() if f"auth.{k}" in secret and v is None)
        plain = {k: v for k, v in auth.items() if f"auth.{k}" not in secret}
        return cls(given, removed), plain

    def _dropped(self, entry: CatalogEntry, auth_type: str) -> frozenset[str]:
        return self.removed | entry.other_auth_types_fields(auth_type)

    def applied(self, entry: CatalogEntry, auth_type: str, stored: Mapping[str, str]) -> dict[str, str]:
        """The secrets to store for a connector of ``auth_type`` that holds ``stored``."""
        dropped = self._dropped(entry, auth_type)
        return {p: v for p, v in {**stored, **self.given}.items() if p not in dropped}

    def changed(self, entry: CatalogEntry, auth_type: str, before: Mapping[str, str]) -> list[str]:
        """The secrets this save changes, judged against ``before`` (the secrets as the request
        found them, so that a retry after a conflict still announces the change it makes)."""
        dropped = self._dropped(entry, auth_type)
        set_anew = {p for p, v in self.given.items() if p not in dropped and before.get(p) != v}
        return sorted(set_anew | (dropped & set(before)))


def decode_secrets(raw: str) -> dict[str, str]:
    data = json.loads(raw)
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


async def restore_secrets(ctx: ServiceContext, path: str, previous: Versioned | None, written: int) -> None:
    """Undo a secret write whose configuration did not commit (best effort, never over a newer
    write: compare-and-swap on the revision we wrote)."""
    try:
        if previous is None:
            await ctx.secrets.delete(path, expected_revision=written)
        else:
            await ctx.secrets.put(path, previous.value, expected_revision=written)
    except (Conflict, Unavailable):
        log.warning("could not undo a secret write after a failed configuration save: %s", path)


async def remove_unnamed(ctx: ServiceContext, path: str, kept: Mapping[str, str], revision: int) -> None:
    """After the commit: the secrets the saved configuration no longer names leave the store
    (compare-and-swap on ``revision``, what this save wrote or read; a newer write wins)."""
    try:
        if kept:
            await ctx.secrets.put(path, json.dumps(dict(kept), sort_keys=True), expected_revision=revision)
        else:
            await ctx.secrets.delete(path, expected_revision=revision)
    except (Conflict, Unavailable):
        # harmless: no configuration names them, so nothing reads them; the next save removes them
        log.warning("could not remove secrets a configuration no longer names: %s", path)
