"""Handlers of the compatibility profile (``compat = "pipeshub"``) that have no counterpart of
ours: the configuration manager's credentials route the existing consumers call."""

from __future__ import annotations

from starlette.responses import Response

from connector_core.errors import NotFound, ValidationError
from entrypoints import compat
from entrypoints.http.endpoint import Call, ok
from entrypoints.http.handlers.internal import scoped_org


async def google_credentials(call: Call) -> Response:
    """``{access_token, access_token_expiry_time (epoch ms)}`` of the org's Google Workspace
    token, refreshed first when due. The caller's service token names the org and the user
    (``orgId``, ``userId``); a token stored for another user is not handed out. The refresh
    token stays here: this service refreshes (consumers call ``refreshTokenRoute``)."""
    assert call.principal is not None
    # first, before anything is looked up: a userId that is not a string (a number, a list, an
    # object) must not slip past the ownership check below and get whoever's token is stored
    user = call.principal.claims.get("userId")
    if user is not None and not isinstance(user, str):
        raise ValidationError.for_field("userId", "must be a string (the service token's userId claim)")
    # the route hands out one user's token: a token naming no user (or "") names nobody's
    if not user:
        raise ValidationError.for_field("userId", "is required (the service token's userId claim)")
    org = scoped_org(call, None)
    container = call.app.container
    # whose token it is, before anything may refresh it: another user's call must not make the
    # provider refresh a token it is then refused
    key = container.ctx.catalog.get(compat.GOOGLE_CONNECTOR).key
    async with container.ctx.uow() as uow:
        stored = await uow.tokens.get_for_connector(org, key)
    if stored is not None and stored.account_id != user:
        raise NotFound("no Google Workspace token is stored for this user")
    record = await container.refresher.fresh_token(org, compat.GOOGLE_CONNECTOR)
    if user != record.account_id:  # replaced by another user's consent meanwhile
        raise NotFound("no Google Workspace token is stored for this user")
    tokens = record.tokens
    body: dict[str, object] = {"access_token": tokens.access_token}
    if tokens.expires_at is not None:
        body["access_token_expiry_time"] = int(tokens.expires_at.timestamp() * 1000)
    return ok(body)
