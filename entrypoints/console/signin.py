"""Signing in and out: a one-time link from ``connector-manager admin-url``, or a pasted user
token (the same admin tokens the API accepts)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import Response

from connector_core.errors import Unauthenticated, Unavailable
from connector_core.ports.iam import Principal
from entrypoints.console.links import redeem_link
from entrypoints.console.session import Session
from entrypoints.console.signouts import end_sessions, generation
from entrypoints.console.web import BASE, Page, not_admin
from entrypoints.http.auth import user_principal

log = logging.getLogger("connector_manager.console")


async def signin_form(p: Page) -> Response:
    if p.session is not None and p.session.signed_in:
        return p.redirect(f"{BASE}/")
    return p.render("signin.html", error=None)


async def signin(p: Page) -> Response:
    token = p.value("token").strip()
    if not token:
        return p.render("signin.html", status=400, error="Paste an admin user token.")
    try:
        principal = user_principal(token, p.state.container.service_secrets.jwt_secret)
    except Unauthenticated as exc:
        return p.render("signin.html", status=401, error=f"This token is not accepted: {exc.message}.")
    ends_by = _token_end(principal.claims.get("exp"))
    if ends_by is None:
        return p.render("signin.html", status=401, error="This token is not accepted: its exp claim is not a time.")
    return await _start(p, principal, ends_by=ends_by)


def _token_end(exp: Any) -> int | None:
    """When an accepted token expires, read as PyJWT and the API read ``exp``: ``int(exp)``, so
    a float (``time.time() + N``, as Python issuers write it) ends the session too, not only an
    int. None for what is no time (a user token always has ``exp``: PyJWT requires it)."""
    if isinstance(exp, bool):
        return None
    try:
        return int(exp)
    except (TypeError, ValueError, OverflowError):
        return None


async def signin_link(p: Page) -> Response:
    token = str(p.request.path_params["token"])
    principal = await redeem_link(p.state.container.secrets_store, token, p.now)
    if principal is None:
        return p.error(
            401,
            "This sign-in link cannot be used",
            "It is unknown, expired or was already used (each link works once). "
            "Run `connector-manager admin-url` for a new one, or sign in with a token.",
        )
    return await _start(p, principal, ends_by=None)


async def signout(p: Page) -> Response:
    """End the session: this browser's cookie, whatever happens next, and every other session
    of the user (a copied cookie stops working too) when the secret store can record it."""
    p.sign_out()  # the response clears this browser's cookie, an error page's too
    user = p.session if p.session is not None and p.session.signed_in else p.unchecked
    if user is None:
        return p.redirect(f"{BASE}/signin")
    assert user.org_id is not None and user.user_id is not None
    try:
        secret = p.state.container.service_secrets.cookie_secret
        await end_sessions(p.state.container.secrets_store, secret, user.org_id, user.user_id)
    except Unavailable as exc:
        log.warning("console: sign-out could not end the user's other sessions: %s", exc.message)
        return p.error(
            503,
            "Signed out of this browser only",
            "This browser is signed out, but your other console sessions (another browser, a copied "
            "cookie) could not be ended: the secret store, where sign-outs are kept, is unavailable. "
            "While it is, no session opens a signed-in page. Once it is back, sign in and sign out "
            "again to end them.",
        )
    return p.redirect(f"{BASE}/signin")


async def _start(p: Page, principal: Principal, *, ends_by: int | None) -> Response:
    if not await p.state.container.iam.is_admin(principal):
        return not_admin(p, principal)
    assert principal.org_id is not None and principal.user_id is not None  # a user: user_principal, links
    try:
        secret = p.state.container.service_secrets.cookie_secret
        signed_out = await generation(p.state.container.secrets_store, secret, principal.org_id, principal.user_id)
    except Unavailable as exc:
        log.warning("console: sign-in could not read the user's sign-outs: %s", exc.message)
        return p.render(
            "signin.html",
            status=503,
            error="Signing in is not possible right now: the secret store, where sign-outs are kept, "
            "is unavailable. Try again in a moment.",
        )
    session = Session.for_principal(principal, p.now, ends_by=ends_by, generation=signed_out)
    if not session.claims_fit():
        return p.render("signin.html", status=400, error="This token carries too many claims for a console session.")
    p.sign_in(session)
    return p.redirect(f"{BASE}/")
