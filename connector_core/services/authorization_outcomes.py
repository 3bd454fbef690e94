"""Storing what an authorization came to: granted tokens, or the provider's refusal."""

from __future__ import annotations

from connector_core.catalog import CatalogEntry
from connector_core.model.connector import AuthState, Connector
from connector_core.model.events import SyncAction
from connector_core.services.connectors import ConnectorView
from connector_core.services.context import ServiceContext
from connector_core.services.staging import stage_connector
from connector_core.tokens import TokenRecord, TokenSet, TokenStatus

__all__ = ["AuthorizationOutcomes"]


class AuthorizationOutcomes:
    """Each outcome is one unit of work (connector, token record and all their events), run
    again when a concurrent writer won; nothing here talks to the provider."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def granted(
        self, entry: CatalogEntry, org_id: str, user_id: str, tokens: TokenSet, apps: tuple[str, ...]
    ) -> tuple[ConnectorView, bool]:
        """The person authorized: the connector is authenticated and enabled for ``apps``, the
        tokens stored (a new record, or replacing the tokens of the existing one — whatever its
        status: a new authorization is a person's word). True when the record is new."""

        async def op() -> tuple[ConnectorView, bool]:
            async with self.ctx.uow() as uow:
                now = self.ctx.clock.now()
                connector = await uow.connectors.get(org_id, entry.key) or Connector.create(
                    entry, org_id=org_id, connector_id=self.ctx.ids.new_id(), now=now, by=user_id
                )
                connector.record_authorization(
                    entry,
                    apps,
                    by=user_id,
                    now=now,
                    ids=self.ctx.ids,
                    sync_action=SyncAction.IMMEDIATE,
                    routes=self.ctx.routes(entry.key),
                )
                record = await uow.tokens.get_for_connector(org_id, entry.key)
                created = record is None
                limits = entry.refresh_limits(connector.config.auth)
                if record is None:
                    record = TokenRecord.create(
                        token_id=self.ctx.ids.new_id(),
                        org_id=org_id,
                        connector_key=entry.key,
                        account_id=user_id,
                        service_type=entry.token_service_type,
                        tokens=tokens,
                        lifecycle=self.ctx.lifecycle,
                        now=now,
                        ids=self.ctx.ids,
                    )
                    record.track_refresh_deadline(limits)
                    await uow.tokens.add(record)
                else:
                    record.replace_tokens(
                        tokens, lifecycle=self.ctx.lifecycle, now=now, ids=self.ctx.ids, account_id=user_id
                    )
                    record.track_refresh_deadline(limits)
                    await uow.tokens.save(record)
                events = await stage_connector(uow, connector, self.ctx)
                await uow.outbox.add([*events, *record.pull_events()])
                await uow.commit()
            return ConnectorView(entry, connector), created

        return await self.ctx.retry_on_conflict(op)

    async def refused(self, entry: CatalogEntry, org_id: str, user_id: str, reason: str) -> ConnectorView:
        """The provider reported an error (the person cancelled, ...): the connector is marked
        NOT_AUTHENTICATED with ``reason`` — unless it works (authenticated with a live token):
        cancelling a re-consent must not break a working connector."""

        async def op() -> ConnectorView:
            async with self.ctx.uow() as uow:
                connector = await uow.connectors.get(org_id, entry.key)
                if connector is None:
                    return ConnectorView.untouched(entry, org_id, self.ctx.clock.now())
                record = await uow.tokens.get_for_connector(org_id, entry.key)
                working = (
                    connector.auth_status.state == AuthState.AUTHENTICATED
                    and record is not None
                    and record.status == TokenStatus.ACTIVE
                )
                if not working:
                    connector.mark_not_authenticated(reason, now=self.ctx.clock.now(), ids=self.ctx.ids, by=user_id)
                    await uow.outbox.add(await stage_connector(uow, connector, self.ctx))
                    await uow.commit()
            return ConnectorView(entry, connector)

        return await self.ctx.retry_on_conflict(op)
