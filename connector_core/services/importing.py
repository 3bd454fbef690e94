"""Importing an existing deployment's connectors (use case): each candidate becomes a connector
here, its secrets stored under our keys, its token a token record that refreshes on schedule.

Rules:

* **Never overwrites.** A connector that exists here (imported before, or configured in this
  service) is skipped: a second run changes nothing, and a token refreshed here since is never
  replaced by the older one the source still holds. A person saving the same connector while the
  import runs wins too: the secrets are created only if absent, and the connector only if absent.
* **One unit of work per connector**, as a configuration save: the secrets first (compare-and-
  swap), then the connector, its token record and their events in one commit; the secrets are
  undone when the commit certainly did not land. Running the import again finishes what an
  outage interrupted.
* **The state, not a history.** The connector is created as the domain creates any: configured,
  authorized with the imported token (``appEnabled`` with ``syncAction: none``: its consumers
  are syncing already), then enabled or disabled as the source had it. A connector that ends
  disabled announces neither ``appEnabled`` nor ``appDisabled``, and real-time updates are not
  announced again: the consumers knew both before the swap.
* **Checked as a configuration save is.** Each candidate's ``auth`` goes through ``check_auth``:
  the checks ``PUT /config`` applies to an ``auth`` section (the catalog schema, strict JSON, the
  section's size limit). One that fails is reported failed, naming each field at fault, never a
  value; a secret is stored only as the text it is (never ``str()`` of something else).
* ``dry_run`` runs the same domain steps and reports what would happen, writing nothing.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from attrs import frozen

from connector_core.catalog import CatalogEntry
from connector_core.errors import Conflict, ConnectorManagerError, NotConfigured, ValidationError
from connector_core.model.connector import Connector, ConnectorConfig
from connector_core.model.events import AppDisabled, AppEnabled, DomainEvent, RealTimeUpdatesChanged, SyncAction
from connector_core.ports.deployment_source import DeploymentSnapshot, ImportCandidate, ImportedToken
from connector_core.scopes import ScopeMapper
from connector_core.services.context import ServiceContext, secret_path
from connector_core.services.staging import stage_connector
from connector_core.tokens import TokenRecord, TokenSet

__all__ = ["AuthCheck", "ConnectorImport", "ImportOutcome", "ImportReport", "ImportResult"]

log = logging.getLogger(__name__)


class ImportOutcome(enum.StrEnum):
    IMPORTED = "imported"
    WOULD_IMPORT = "would import"
    SKIPPED = "skipped"
    FAILED = "failed"


@frozen
class ImportResult:
    item: str
    outcome: ImportOutcome
    reason: str | None = None
    notes: tuple[str, ...] = ()


@frozen
class ImportReport:
    results: tuple[ImportResult, ...]

    def of(self, outcome: ImportOutcome) -> list[ImportResult]:
        return [r for r in self.results if r.outcome == outcome]

    @property
    def failed(self) -> bool:
        return any(r.outcome == ImportOutcome.FAILED for r in self.results)


#: called after each item with (items done, items in all, its result)
Progress = Callable[[int, int, ImportResult], None]
#: ``check(entry, auth)``: what ``PUT /config`` checks of an ``auth`` section; a
#: :class:`ConnectorManagerError` naming each field at fault (never a value) when it fails
AuthCheck = Callable[[CatalogEntry, Mapping[str, Any]], None]


_MEANWHILE = "created here meanwhile (by another run or a person); never overwritten"


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConnectorImport:
    def __init__(self, ctx: ServiceContext, *, check_auth: AuthCheck) -> None:
        self.ctx = ctx
        self._check_auth = check_auth

    async def run(
        self, snapshot: DeploymentSnapshot, *, dry_run: bool = False, progress: Progress | None = None
    ) -> ImportReport:
        """Import every candidate of ``snapshot`` (in order), reporting each; what the source
        could not give is reported too (skipped or failed, with the reason)."""
        results = [ImportResult(i.item, ImportOutcome.FAILED, i.reason) for i in snapshot.failed]
        results += [ImportResult(i.item, ImportOutcome.SKIPPED, i.reason) for i in snapshot.skipped]
        total = len(results) + len(snapshot.candidates)
        if progress is not None:
            for done, result in enumerate(results, start=1):
                progress(done, total, result)
        for candidate in snapshot.candidates:
            result = await self._one(candidate, dry_run)
            results.append(result)
            if progress is not None:
                progress(len(results), total, result)
        return ImportReport(tuple(results))

    async def _one(self, candidate: ImportCandidate, dry_run: bool) -> ImportResult:
        item = f"{candidate.label} (from {candidate.source})"
        try:
            notes = await self._import(candidate, dry_run)
        except _Skip as skip:
            return ImportResult(item, ImportOutcome.SKIPPED, skip.reason, candidate.notes)
        except ConnectorManagerError as exc:
            log.warning("import of %s failed (%s: %s)", candidate.label, type(exc).__name__, exc.message)
            return ImportResult(item, ImportOutcome.FAILED, exc.message, candidate.notes)
        outcome = ImportOutcome.WOULD_IMPORT if dry_run else ImportOutcome.IMPORTED
        return ImportResult(item, outcome, None, (*candidate.notes, *notes))

    async def _import(self, candidate: ImportCandidate, dry_run: bool) -> list[str]:
        entry = self.ctx.catalog.get(candidate.connector_key)
        async with self.ctx.uow() as uow:
            if await uow.connectors.get(candidate.org_id, entry.key) is not None:
                raise _Skip("already here (imported before, or configured in this service); never overwritten")
            if await uow.tokens.get_for_connector(candidate.org_id, entry.key) is not None:
                raise _Skip("a token is already stored here for it; never overwritten")
        now = self.ctx.clock.now()
        given = {k: v for k, v in candidate.auth.items() if v is not None}  # null: not set (never "None")
        self._check_auth(entry, given)
        secrets = {f"auth.{k}": _text(k, v) for k, v in given.items() if f"auth.{k}" in entry.secret_fields}
        plain = {k: v for k, v in given.items() if f"auth.{k}" not in entry.secret_fields}
        connector, notes = self._build(entry, candidate, plain, frozenset(secrets), now)
        record = None
        if candidate.token is not None and connector.uses_oauth:
            record = self._record(entry, candidate.token, connector, now, notes)
        elif candidate.token is not None:
            notes.append(f"its token is not kept: {entry.display_name} uses {connector.auth_type} here")
        if dry_run:
            return notes
        await self._store(entry, connector, record, secrets)
        return notes

    def _build(
        self,
        entry: CatalogEntry,
        candidate: ImportCandidate,
        plain: dict[str, object],
        secret_paths: frozenset[str],
        now: datetime,
    ) -> tuple[Connector, list[str]]:
        """The connector as the domain makes it: configured, authorized, enabled or not."""
        ids, by = self.ctx.ids, candidate.last_updated_by
        notes: list[str] = []
        connector = Connector.create(entry, org_id=candidate.org_id, connector_id=ids.new_id(), now=now, by=by)
        config = ConnectorConfig(auth=plain, secrets_set=secret_paths)
        connector.update_configuration(entry, config, by=by, now=now, ids=ids, changed_secrets=secret_paths)
        if candidate.token is not None and connector.uses_oauth:
            apps = ScopeMapper(entry).apps_for(_scopes(entry, candidate.token, notes))
            connector.record_authorization(
                entry, apps, by=by, now=now, ids=ids, sync_action=SyncAction.NONE, routes=self.ctx.routes(entry.key)
            )
            if not candidate.enabled:
                connector.disable(by=by, now=now, ids=ids)
        elif candidate.enabled:
            try:
                routes = self.ctx.routes(entry.key)
                connector.enable(entry, sync_action=SyncAction.NONE, by=by, now=now, ids=ids, routes=routes)
            except NotConfigured as exc:
                notes.append(f"not enabled here although enabled there: {exc.message}")
        return connector, notes

    def _record(
        self, entry: CatalogEntry, token: ImportedToken, connector: Connector, now: datetime, notes: list[str]
    ) -> TokenRecord:
        if token.refresh_token is None:
            notes.append("no refresh token: works until the access token expires, then needs a new consent")
        expires_at = token.expires_at
        if expires_at is None and token.refresh_token is not None:
            # an unknown expiry is taken as "expiring now": a token that never counted as due
            # would never be refreshed, and an access token of unknown age may be dead already
            expires_at = now
            notes.append(
                "no expiry stored there: refreshed at the first chance"
                if token.access_token
                else "imported with its refresh token only, as expiring now: refreshed at the first chance"
            )
        tokens = TokenSet(
            access_token=token.access_token,
            obtained_at=now,
            refresh_token=token.refresh_token,
            expires_at=expires_at,
            refresh_token_expires_at=token.refresh_token_expires_at,
            scopes=frozenset(_scopes(entry, token, [])),
        )
        record = TokenRecord.create(
            token_id=self.ctx.ids.new_id(),
            org_id=connector.org_id,
            connector_key=entry.key,
            account_id=token.account_id,
            service_type=entry.token_service_type,
            tokens=tokens,
            lifecycle=self.ctx.lifecycle,
            now=now,
            ids=self.ctx.ids,
        )
        record.track_refresh_deadline(entry.refresh_limits(connector.config.auth))
        return record

    async def _store(
        self, entry: CatalogEntry, connector: Connector, record: TokenRecord | None, secrets: dict[str, str]
    ) -> None:
        path = secret_path(entry.key, connector.org_id)
        written: int | None = None
        if secrets:
            value = json.dumps(secrets, sort_keys=True)
            found = await self.ctx.secrets.get(path)
            if found is None:
                try:  # create-if-absent: a person's save that wrote them meanwhile wins
                    written = await self.ctx.secrets.put(path, value, expected_revision=0)
                except Conflict:
                    raise _Skip(_MEANWHILE) from None
            elif found.value != value:
                # secrets without a connector: a person's save between its secrets and its commit
                # (or a run interrupted there with other values); theirs are never overwritten
                raise _Skip(
                    "secrets are stored here for it without a connector (a configuration being saved, or an"
                    " interrupted run's); never overwritten"
                )
            # else: the same values, left by an interrupted run of this import: kept as they are
        try:
            async with self.ctx.uow() as uow:
                if record is not None:
                    await uow.tokens.add(record)
                events = _announced(await stage_connector(uow, connector, self.ctx), connector)
                await uow.outbox.add([*events, *(record.pull_events() if record else [])])
                await uow.commit()
        except Conflict:
            if written is not None:  # nothing was committed: neither is the secret (unless rewritten since)
                with contextlib.suppress(Conflict):
                    await self.ctx.secrets.delete(path, expected_revision=written)
            raise _Skip(_MEANWHILE) from None


def _text(name: str, value: object) -> str:
    """A secret as the text it is; anything else is refused, never stored as its ``str()``."""
    if not isinstance(value, str):
        raise ValidationError.for_field(f"auth.{name}", "must be of type string")
    return value


def _scopes(entry: CatalogEntry, token: ImportedToken, notes: list[str]) -> Sequence[str]:
    if token.scopes:
        return token.scopes
    notes.append("granted scopes were not stored there: the catalog's default scopes are assumed")
    return ScopeMapper(entry).default_scopes()


def _announced(events: list[DomainEvent], connector: Connector) -> list[DomainEvent]:
    """What consumers did not know before the swap (see the module's rules)."""
    dropped: tuple[type[DomainEvent], ...] = (RealTimeUpdatesChanged,)
    if not connector.is_enabled:
        dropped += (AppEnabled, AppDisabled)
    return [e for e in events if not isinstance(e, dropped)]
