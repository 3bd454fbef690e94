"""Revoking tokens at the provider (RFC 7009)."""

from __future__ import annotations

import logging

from connector_core.catalog import OAuthSpec
from connector_core.errors import ConnectorManagerError
from connector_core.ports.oauth_provider import ClientCredentials, OAuthProviderClient
from connector_core.tokens import TokenSet

__all__ = ["revoke_at_provider"]

log = logging.getLogger(__name__)


async def revoke_at_provider(
    provider: OAuthProviderClient,
    spec: OAuthSpec,
    client: ClientCredentials,
    tokens: TokenSet,
    *,
    org_id: str,
    key: str,
) -> None:
    """Best effort, when the provider offers revocation: the refresh token, then the access
    token. A failure is logged (without secrets), never raised."""
    if not spec.revocation_url:
        return
    for token, hint in ((tokens.refresh_token, "refresh_token"), (tokens.access_token, "access_token")):
        if not token:
            continue
        try:
            await provider.revoke(spec, client, token=token, token_type_hint=hint)
        except ConnectorManagerError as exc:
            log.warning(
                "provider revocation failed: org=%s connector=%s hint=%s (%s: %s)",
                org_id,
                key,
                hint,
                type(exc).__name__,
                exc.message,
            )
