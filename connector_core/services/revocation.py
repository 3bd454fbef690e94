"""Revocation: disconnecting a connector, and revoking tokens at the provider (RFC 7009).

Revocation holds the token's refresh lease (:mod:`connector_core.services.token_lease`), so
no refresh can mint a token between the provider's revocation and the local delete. It renews
the lease before each provider call and before the delete, and stops (409, retry) when it
cannot: a refresh may then have taken over, and the person's retry revokes what it stored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from connector_core.catalog import CatalogEntry, OAuthSpec
from connector_core.errors import Conflict, ConnectorManagerError, LeaseLost, NoTokens
from connector_core.model.events import DomainEvent
from connector_core.ports.oauth_provider import ClientCredentials, OAuthProviderClient
from connector_core.services.connectors import ConnectorView
from connector_core.services.context import ServiceContext
from connector_core.services.providers import ProviderResolver
from connector_core.services.staging import stage_connector
from connector_core.services.token_lease import HeldLease, TokenLeases
from connector_core.tokens import TokenSet

__all__ = ["TokenRevocation", "revoke_at_provider"]

log = logging.getLogger(__name__)


async def revoke_at_provider(
    provider: OAuthProviderClient,
    spec: OAuthSpec,
    client: ClientCredentials,
    tokens: TokenSet,
    *,
    org_id: str,
    key: str,
    lease: HeldLease | None = None,
) -> None:
    """Best effort, when the provider offers revocation: the refresh token, then the access
    token. A provider failure is logged (without secrets), never raised. With ``lease``, it is
    renewed before each call (:class:`LeaseLost` stops the revocation) and bounds each call."""
    if not spec.revocation_url:
        return
    for token, hint in ((tokens.refresh_token, "refresh_token"), (tokens.access_token, "access_token")):
        if not token:
            continue
        call = _revocation(provider, spec, client, token, hint)
        if lease is not None:
            await lease.renew()
        try:
            await (lease.bounded(call) if lease is not None else call())
        except (ConnectorManagerError, TimeoutError) as exc:
            log.warning(
                "provider revocation failed: org=%s connector=%s hint=%s (%s: %s)",
                org_id,
                key,
                hint,
                type(exc).__name__,
                getattr(exc, "message", "no answer in time"),
            )


def _revocation(
    provider: OAuthProviderClient, spec: OAuthSpec, client: ClientCredentials, token: str, hint: str
) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        await provider.revoke(spec, client, token=token, token_type_hint=hint)

    return call


class TokenRevocation:
    def __init__(
        self, ctx: ServiceContext, provider: OAuthProviderClient, resolver: ProviderResolver, leases: TokenLeases
    ) -> None:
        self.ctx = ctx
        self.provider = provider
        self.resolver = resolver
        self.leases = leases

    async def revoke(self, org_id: str, user_id: str, name: str) -> ConnectorView:
        """Disconnect: revoke at the provider (when offered: refresh token, then access token;
        failures are logged and do not stop the rest), delete the token record (TOKEN_REVOKED)
        and mark the connector NOT_AUTHENTICATED (which disables it). :class:`NoTokens` when there
        is nothing to revoke; :class:`Conflict` when a refresh keeps the token's lease, or takes
        it over meanwhile: retry."""
        entry = self.resolver.oauth_entry(name)
        async with self.ctx.uow() as uow:
            record = await uow.tokens.get_for_connector(org_id, entry.key)
        if record is None:
            raise NoTokens(
                f"{entry.display_name} has no tokens to revoke (never authorized, or revoked already)",
                metadata={"connector": entry.key},
            )
        async with self.leases.hold(record.id, wait=True) as held:
            if held is None:
                raise Conflict("a refresh of this token is running; retry the revocation shortly")
            try:
                await self._revoke_stored(org_id, entry, held)
                await held.renew()  # the local delete, too, happens while no refresh can run
            except LeaseLost:
                raise Conflict("a token refresh took over during the revocation; retry the revocation") from None
            return await self._disconnect(org_id, user_id, entry)

    async def _revoke_stored(self, org_id: str, entry: CatalogEntry, held: HeldLease) -> None:
        # under the lease: the tokens as they are now (a refresh may have rotated them)
        async with self.ctx.uow() as uow:
            connector = await uow.connectors.get(org_id, entry.key)
            record = await uow.tokens.get_for_connector(org_id, entry.key)
        if record is None:
            return
        await held.renew()
        try:
            resolved = await held.bounded(lambda: self.resolver.resolve(org_id, entry, connector))
        except (ConnectorManagerError, TimeoutError) as exc:
            log.warning(
                "cannot revoke at the provider: org=%s connector=%s (%s: %s)",
                org_id,
                entry.key,
                type(exc).__name__,
                getattr(exc, "message", "no answer in time"),
            )
            return
        await revoke_at_provider(
            self.provider, resolved.spec, resolved.client, record.tokens, org_id=org_id, key=entry.key, lease=held
        )

    async def _disconnect(self, org_id: str, user_id: str, entry: CatalogEntry) -> ConnectorView:
        reason = f"revoked by {user_id}"

        async def op() -> ConnectorView:
            async with self.ctx.uow() as uow:
                now = self.ctx.clock.now()
                events: list[DomainEvent] = []
                connector = await uow.connectors.get(org_id, entry.key)
                if connector is not None:
                    connector.mark_not_authenticated(reason, now=now, ids=self.ctx.ids, by=user_id)
                    events += await stage_connector(uow, connector, self.ctx)
                record = await uow.tokens.get_for_connector(org_id, entry.key)
                if record is not None:
                    record.revoke(now=now, ids=self.ctx.ids)
                    events += record.pull_events()
                    await uow.tokens.delete(record)
                await uow.outbox.add(events)
                await uow.commit()
            return ConnectorView(entry, connector) if connector else ConnectorView.untouched(entry, org_id, now)

        view = await self.ctx.retry_on_conflict(op)
        log.info("OAuth tokens revoked: org=%s connector=%s", org_id, entry.key)
        return view
