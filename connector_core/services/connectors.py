"""Use cases on connectors: list, read, configure, toggle, filters."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from attrs import frozen

from connector_core.catalog import CatalogEntry
from connector_core.errors import CommitOutcomeUnknown, Conflict, Unavailable, ValidationError
from connector_core.model.connector import Connector, ConnectorConfig
from connector_core.model.events import SyncAction
from connector_core.ports.unit_of_work import UnitOfWork
from connector_core.services.config_secrets import SecretEdit, decode_secrets, remove_unnamed, restore_secrets
from connector_core.services.context import ServiceContext, read_secrets, secret_path
from connector_core.services.staging import stage_connector
from connector_core.tokens import RefreshDeadline, RefreshWarning, TokenSummary
from connector_core.tokens.refresh_deadline import warning_at

log = logging.getLogger(__name__)

#: first wait before reading again to settle a commit whose outcome is unknown (then doubled)
_OUTCOME_DELAY = 0.2


@frozen
class TokenOutlook:
    """A connector's stored token as a list shows it: its bookkeeping and how close its refresh
    token is to its deadline (the rule: :mod:`connector_core.tokens.refresh_deadline`)."""

    summary: TokenSummary
    deadline: RefreshDeadline | None
    warning: RefreshWarning | None


@frozen
class ConnectorView:
    """A connector as callers see it: the stored aggregate, or a fresh default for a catalog
    entry the org has not touched yet (``connector.is_new``). Lists also read the tokens
    (``tokens_read``; ``token`` is None when the connector has none)."""

    entry: CatalogEntry
    connector: Connector
    token: TokenOutlook | None = None
    tokens_read: bool = False

    @classmethod
    def untouched(cls, entry: CatalogEntry, org_id: str, now: datetime) -> ConnectorView:
        """The default of a catalog entry the org has not touched (not stored: no id)."""
        return cls(entry, Connector.create(entry, org_id=org_id, connector_id="", now=now, by=None))


@frozen
class ConfigUpdate:
    """A validated ``PUT /config`` body. Secret fields may be absent (keep the stored value)
    or None (remove it)."""

    base_url: str
    auth: Mapping[str, Any]
    sync: Mapping[str, Any]
    filters: Mapping[str, Any]


class ConnectorService:
    """Use cases on connectors. ``sleep`` is awaited between the reads that settle a commit
    whose outcome is unknown (at most ``outcome_attempts``; inject a recorder in tests)."""

    def __init__(
        self,
        ctx: ServiceContext,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        outcome_attempts: int = 3,
    ) -> None:
        self.ctx = ctx
        self._sleep = sleep
        self.outcome_attempts = outcome_attempts

    # -- reads (no secret is decrypted; one storage round trip) -----------------------------

    async def list(self, org_id: str, *, enabled: bool | None = None) -> list[ConnectorView]:
        """Every catalog entry as the org has it, with its token's outlook (two reads)."""
        async with self.ctx.uow() as uow:
            stored = {c.key: c for c in await uow.connectors.list(org_id)}
            tokens = {t.connector_key: t for t in await uow.tokens.summaries(org_id)}
        now = self.ctx.clock.now()
        views = []
        for entry in self.ctx.catalog:
            found = stored.get(entry.key)
            connector = found or ConnectorView.untouched(entry, org_id, now).connector
            summary = tokens.get(entry.key)
            outlook = None
            if summary is not None:
                deadline = summary.deadline_under(entry.refresh_limits(connector.config.auth))
                outlook = TokenOutlook(summary, deadline, warning_at(deadline.at if deadline else None, now))
            views.append(ConnectorView(entry, connector, outlook, tokens_read=True))
        if enabled is None:
            return views
        return [v for v in views if v.connector.is_enabled is enabled]

    async def get(self, org_id: str, name: str) -> ConnectorView:
        entry = self.ctx.catalog.get(name)
        async with self.ctx.uow() as uow:
            found = await uow.connectors.get(org_id, entry.key)
        return ConnectorView(entry, found) if found else ConnectorView.untouched(entry, org_id, self.ctx.clock.now())

    # -- writes ------------------------------------------------------------------------------

    async def update_configuration(
        self, org_id: str, user_id: str | None, name: str, update: ConfigUpdate
    ) -> ConnectorView:
        """Replace the configuration; secrets given are stored encrypted, omitted ones kept,
        ``None`` ones removed, and those of other auth types dropped (:class:`SecretEdit`).

        The secrets are written first (compare-and-swap), then the configuration is committed;
        the secret write is undone only when the configuration certainly did not land:

        * the commit raised :class:`Conflict` (nothing stored): undo, and the use case retries;
        * it raised :class:`ValidationError` (the store cannot keep the data, e.g. MongoDB and a
          field name with NUL; refused before anything was written): undo, and the caller gets 400;
        * it raised :class:`Unavailable` (the store refused or could not be reached before the
          commit was applied: nothing stored): undo, and the caller gets 503 "not saved";
        * it raised :class:`CommitOutcomeUnknown` (a commit was sent and its answer never came:
          e.g. a MongoDB commit that timed out may still land), and only then:
          :meth:`_outcome` reads the connector again. If the configuration is there, it is kept
          with its secret and the save succeeded; if not, the version the commit expected is
          taken first (so it can never land later), then the secret is undone and the caller
          gets 503 "not saved". When storage cannot tell within a few attempts, both are left as
          they are (the commit may still land) and the caller gets 503 saying the outcome is
          unknown; saving again converges;
        * anything else (a cancelled request, a bug) leaves the outcome unknown too: both stay.
        """
        entry = self.ctx.catalog.get(name)
        edit, plain_auth = SecretEdit.split(entry, update.auth)

        path = secret_path(entry.key, org_id)
        # What changed is judged against the secrets as they were when the request came:
        # a retry after a conflict must still see (and announce) the change it is making.
        before = await read_secrets(self.ctx.secrets, entry.key, org_id)

        async def op() -> ConnectorView:
            found = await self.ctx.secrets.get(path)
            stored = decode_secrets(found.value) if found else {}
            async with self.ctx.uow() as uow:
                connector = await self._load_or_create(uow, entry, org_id, user_id)
                # the auth type the connector will have (a body that names none keeps the stored one)
                auth_type = ConnectorConfig(auth=plain_auth).auth_type(connector.auth_type or entry.default_auth_type)
                named = connector.config.secrets_set  # its secrets; anything else stored is a leftover
                kept = edit.applied(entry, auth_type, {p: v for p, v in stored.items() if p in named})
                new = ConnectorConfig(
                    auth=plain_auth,
                    sync=update.sync,
                    filters=update.filters,
                    base_url=update.base_url,
                    secrets_set=frozenset(kept.keys()),
                )
                connector.update_configuration(
                    entry,
                    new,
                    by=user_id,
                    now=self.ctx.clock.now(),
                    ids=self.ctx.ids,
                    changed_secrets=edit.changed(entry, auth_type, {p: v for p, v in before.items() if p in named}),
                )
                written: int | None = None
                revision = found.revision if found else 0
                first = {**stored, **kept}  # what both the stored and the new configuration name
                if first != stored:
                    # Secrets go first, compare-and-swap on what was read (a concurrent writer's
                    # secret is never overwritten: Conflict, and the whole use case retries).
                    written = await self.ctx.secrets.put(
                        path, json.dumps(first, sort_keys=True), expected_revision=revision
                    )
                expected_version = connector.version
                try:
                    await uow.outbox.add(await stage_connector(uow, connector, self.ctx))
                except BaseException:
                    if written is not None:  # nothing was committed: neither is the secret
                        await restore_secrets(self.ctx, path, found, written)
                    raise
                try:
                    await uow.commit()
                except CommitOutcomeUnknown as outage:
                    if written is None:  # nothing to undo; a removal left undone is harmless
                        raise
                    landed, stored_now = await self._outcome(entry, connector, expected_version)
                    if landed is None:
                        log.error("configuration save outcome unknown; secret left as written: %s", path)
                        raise Unavailable(
                            "storage failed while saving the configuration and the outcome is unknown;"
                            " read the configuration and save it again if it is not there"
                        ) from outage
                    if not landed:
                        await restore_secrets(self.ctx, path, found, written)
                        raise Unavailable("storage failed: the configuration was not saved; retry") from outage
                    assert stored_now is not None
                    connector = stored_now
                except (Conflict, ValidationError, Unavailable) as refused:
                    # certainly not stored: a concurrent writer won, the store cannot keep the
                    # data, or it failed before the commit was applied
                    if written is not None:  # the configuration was not saved: neither is the secret
                        await restore_secrets(self.ctx, path, found, written)
                    if isinstance(refused, Unavailable):
                        raise Unavailable(
                            "storage failed: the configuration was not saved; retry", metadata=refused.metadata
                        ) from refused
                    raise
            if kept != first:  # committed: what it no longer names goes
                await remove_unnamed(self.ctx, path, kept, revision if written is None else written)
            return ConnectorView(entry, connector)

        view = await self.ctx.retry_on_conflict(op)
        # field names only: the values of secrets never reach a log line
        log.info(
            "configuration saved: org=%s connector=%s by=%s secrets=%s",
            org_id,
            entry.key,
            user_id,
            ",".join(sorted(view.connector.config.secrets_set)) or "-",
        )
        return view

    async def toggle(
        self,
        org_id: str,
        user_id: str | None,
        name: str,
        sync_action: SyncAction = SyncAction.IMMEDIATE,
    ) -> ConnectorView:
        def change(entry: CatalogEntry, connector: Connector) -> None:
            connector.toggle(
                entry,
                by=user_id,
                now=self.ctx.clock.now(),
                ids=self.ctx.ids,
                sync_action=sync_action,
                routes=self.ctx.routes(entry.key),
            )

        return _logged_toggle(await self._change(org_id, user_id, name, change), org_id, user_id)

    async def set_enabled(
        self,
        org_id: str,
        user_id: str | None,
        name: str,
        enabled: bool,
        sync_action: SyncAction = SyncAction.IMMEDIATE,
    ) -> ConnectorView:
        def change(entry: CatalogEntry, connector: Connector) -> None:
            now = self.ctx.clock.now()
            if enabled:
                routes = self.ctx.routes(entry.key)
                connector.enable(entry, sync_action=sync_action, by=user_id, now=now, ids=self.ctx.ids, routes=routes)
            else:
                connector.disable(by=user_id, now=now, ids=self.ctx.ids)

        return _logged_toggle(await self._change(org_id, user_id, name, change), org_id, user_id)

    async def save_filters(
        self, org_id: str, user_id: str | None, name: str, selection: Mapping[str, Any]
    ) -> ConnectorView:
        clean = validate_filter_selection(self.ctx.catalog.get(name), selection)

        def change(entry: CatalogEntry, connector: Connector) -> None:
            connector.save_filters(clean, by=user_id, now=self.ctx.clock.now(), ids=self.ctx.ids)

        return await self._change(org_id, user_id, name, change)

    async def _change(
        self, org_id: str, user_id: str | None, name: str, change: Callable[[CatalogEntry, Connector], None]
    ) -> ConnectorView:
        """Load (or create) the connector, ``change`` it, stage it with its events, commit;
        the whole again when a concurrent writer won."""
        entry = self.ctx.catalog.get(name)

        async def op() -> ConnectorView:
            async with self.ctx.uow() as uow:
                connector = await self._load_or_create(uow, entry, org_id, user_id)
                change(entry, connector)
                await uow.outbox.add(await stage_connector(uow, connector, self.ctx))
                await uow.commit()
            return ConnectorView(entry, connector)

        return await self.ctx.retry_on_conflict(op)

    # -- helpers -----------------------------------------------------------------------------

    async def _outcome(
        self, entry: CatalogEntry, ours: Connector, expected_version: int
    ) -> tuple[bool | None, Connector | None]:
        """Did a commit of ``ours`` (expecting ``expected_version``) that raised store it?
        ``(True, stored)``, ``(False, None)`` — made certain: a commit that may still land is
        fenced out by taking the version it expects — or ``(None, None)`` when storage cannot
        tell within ``outcome_attempts`` tries."""
        for attempt in range(self.outcome_attempts):
            if attempt:
                await self._sleep(_OUTCOME_DELAY * 2 ** (attempt - 1))
            try:
                async with self.ctx.uow() as uow:
                    stored = await uow.connectors.get(ours.org_id, ours.key)
                    if stored is not None and stored.version > expected_version:
                        # ours, or written over ours (equal configuration: a toggle) → landed;
                        # else ours can no longer land (or a later save replaced it and its secrets)
                        landed = (stored.config, stored.auth_type) == (ours.config, ours.auth_type)
                        return (True, stored) if landed else (False, None)
                    if stored is None:  # ours was the first save: a blank connector takes the slot
                        await uow.connectors.add(
                            Connector.create(
                                entry,
                                org_id=ours.org_id,
                                connector_id=self.ctx.ids.new_id(),
                                now=ours.updated_at,
                                by=None,
                            )
                        )
                    else:
                        await uow.connectors.save(stored)  # a version bump, nothing else
                    await uow.commit()
                return False, None
            except (Conflict, Unavailable):
                continue  # changed meanwhile (maybe ours just landed), or still down: look again
        return None, None

    async def _load_or_create(
        self, uow: UnitOfWork, entry: CatalogEntry, org_id: str, user_id: str | None
    ) -> Connector:
        found = await uow.connectors.get(org_id, entry.key)
        if found is not None:
            return found
        return Connector.create(
            entry,
            org_id=org_id,
            connector_id=self.ctx.ids.new_id(),
            now=self.ctx.clock.now(),
            by=user_id,
        )


def validate_filter_selection(entry: CatalogEntry, selection: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``filterOptions`` against the catalog's filter definitions; errors name the field."""
    errors: list[dict[str, str]] = []
    clean: dict[str, Any] = {}
    for key, value in selection.items():
        path = f"filterOptions.{key}"
        definition = entry.filter(str(key))
        if definition is None:
            known = ", ".join(f.key for f in entry.filters) or "none"
            errors.append({"path": path, "message": f"unknown filter; known filters: {known}"})
            continue
        problem = _filter_value_problem(definition.type, definition.options, value)
        if problem:
            errors.append({"path": path, "message": problem})
        else:
            clean[str(key)] = value
    if errors:
        raise ValidationError("invalid filterOptions", errors=errors)
    return clean


def _filter_value_problem(kind: str, options: Sequence[str], value: Any) -> str | None:
    if value is None:
        return None
    if kind == "boolean":
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "string":
        return None if isinstance(value, str) and len(value) <= 1024 else "must be a string"
    if kind == "date":
        if not isinstance(value, str):
            return "must be an ISO date (YYYY-MM-DD)"
        try:
            date.fromisoformat(value)
        except ValueError:
            return "must be an ISO date (YYYY-MM-DD)"
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return "must be a list of strings"
    if len(value) > 1000:
        return "at most 1000 values"
    if kind == "multiselect":
        bad = [v for v in value if v not in options]
        if bad:
            return f"unknown option(s) {', '.join(bad[:5])}; allowed: {', '.join(options)}"
    return None


def _logged_toggle(view: ConnectorView, org_id: str, user_id: str | None) -> ConnectorView:
    state = "enabled" if view.connector.is_enabled else "disabled"
    log.info("connector %s: org=%s connector=%s by=%s", state, org_id, view.entry.key, user_id)
    return view
