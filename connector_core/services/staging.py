"""Staging a changed connector in a unit of work, written once for every use case."""

from __future__ import annotations

from connector_core.model.connector import AuthState, Connector
from connector_core.model.events import AppDisabled, AppEnabled, AuthStatusChanged, ConnectorConfigured, DomainEvent
from connector_core.ports.unit_of_work import UnitOfWork
from connector_core.services.context import ServiceContext
from connector_core.tokens import TokenRecord

__all__ = ["mark_needs_reauthentication", "stage_connector"]


async def stage_connector(uow: UnitOfWork, connector: Connector, ctx: ServiceContext) -> list[DomainEvent]:
    """Add (new) or save (changed) ``connector`` in ``uow`` and return the events it recorded,
    for the caller to put in the outbox with the rest of the change.

    When the connector was enabled or disabled, its token follows in the same unit of work
    (:meth:`TokenRecord.follow_connector`): a disabled connector's token is paused — neither
    refreshed nor handed out — and enabling resumes it. Whatever disabled the connector (a
    person, a refused consent), its credentials stop being served in the same commit. When it
    was configured, its token's refresh-token deadline is worked out again (``testingMode``
    changes the limits that apply); when that configuration changed its OAuth client, the token
    issued to the old client needs a new authorization in the same commit
    (:meth:`TokenRecord.apply_client_change`; its TOKEN_EXPIRED is among the returned events).

    With ``ctx.reauthentication_disables``, a connector that came to need re-authentication
    (a dead grant, a changed client) is disabled in the same change, announcing ``appDisabled``.
    """
    events = connector.pull_events()
    if ctx.reauthentication_disables and connector.is_enabled and _came_to_need_reauthentication(events):
        connector.disable(by=None, now=ctx.clock.now(), ids=ctx.ids)
        events += connector.pull_events()
    if connector.is_new:
        await uow.connectors.add(connector)
    elif events:
        await uow.connectors.save(connector)
    toggled = any(isinstance(e, AppEnabled | AppDisabled) for e in events)
    configured = any(isinstance(e, ConnectorConfigured) for e in events)
    if toggled or configured:
        record = await uow.tokens.get_for_connector(connector.org_id, connector.key)
        if record is None:
            return events
        changed = False
        if configured:
            client_changed = _reauthentication_reason(events)
            if client_changed is not None:
                changed = record.apply_client_change(client_changed, now=ctx.clock.now(), ids=ctx.ids)
            limits = ctx.catalog.get(connector.key).refresh_limits(connector.config.auth)
            changed = record.track_refresh_deadline(limits) or changed
        if toggled:
            changed = (
                record.follow_connector(connector.is_enabled, lifecycle=ctx.lifecycle, now=ctx.clock.now()) or changed
            )
        if changed:
            await uow.tokens.save(record)
        events += record.pull_events()
    return events


def _reauthentication_reason(events: list[DomainEvent]) -> str | None:
    """Why a configuration change asked for re-authorization (its OAuth client changed), if it did."""
    for e in events:
        if isinstance(e, AuthStatusChanged) and e.status == AuthState.NEEDS_REAUTHENTICATION.value:
            return e.reason or "client configuration changed"
    return None


def _came_to_need_reauthentication(events: list[DomainEvent]) -> bool:
    return any(isinstance(e, AuthStatusChanged) and e.status == AuthState.NEEDS_REAUTHENTICATION.value for e in events)


async def mark_needs_reauthentication(
    uow: UnitOfWork, ctx: ServiceContext, record: TokenRecord, reason: str
) -> list[DomainEvent]:
    """The provider refused ``record``'s grant: its connector (if any) asks a person to
    authorize again. Staged in ``uow``; returns the connector's events."""
    connector = await uow.connectors.get(record.org_id, record.connector_key)
    if connector is None:
        return []
    connector.mark_needs_reauthentication(reason, now=ctx.clock.now(), ids=ctx.ids)
    return await stage_connector(uow, connector, ctx)
