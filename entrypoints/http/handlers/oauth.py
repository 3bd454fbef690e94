"""The OAuth flows: authorize, callback, the legacy code exchange, revocation."""

from __future__ import annotations

from starlette.responses import Response

from connector_core.errors import PermissionDenied, ValidationError
from entrypoints import compat
from entrypoints.http.endpoint import Call, ok
from entrypoints.http.views import connector_json


async def oauth_authorize(call: Call) -> Response:
    oauth = call.app.container.oauth
    url = await oauth.authorization_url(call.org_id, call.signed_in_user, call.params["name"], call.query["baseUrl"])
    return ok({"authorizationUrl": url})


async def oauth_callback(call: Call) -> Response:
    q = call.query
    if not q.get("error") and (not q.get("code") or not q.get("state")):
        raise ValidationError(
            "Code and state are required",
            errors=[{"path": p, "message": "is required"} for p in ("code", "state") if not q.get(p)],
        )
    result = await call.app.container.oauth.handle_callback(
        call.org_id,
        call.signed_in_user,
        call.params["name"],
        code=q.get("code"),
        state=q.get("state"),
        error=q.get("error"),
        error_description=q.get("error_description"),
        base_url=q["baseUrl"],
    )
    return ok(
        {
            "redirectUrl": result.redirect_url,
            "authenticated": result.authenticated,
            "reason": result.reason,
            "connector": connector_json(result.connector),
        }
    )


async def get_token_from_code(call: Call) -> Response:
    principal = call.principal
    assert principal is not None
    if not principal.email:
        raise PermissionDenied("the user token has no email to compare with the Google account")
    view, created = await call.app.container.oauth.token_from_code(
        call.org_id, call.signed_in_user, principal.email, call.body["tempCode"], call.body.get("baseUrl")
    )
    status = 201 if created else 200
    if compat.enabled(call.app.container.settings):  # the existing service's body
        message = f"Connector {view.entry.key} created and enabled" if created else "Connector is now enabled"
        return ok({"message": message, "connector": connector_json(view)}, status=status)
    return ok(connector_json(view), status=status)


async def revoke_tokens(call: Call) -> Response:
    view = await call.app.container.oauth.revoke(call.org_id, call.signed_in_user, call.params["name"])
    return ok({"message": f"{view.entry.display_name} tokens revoked", "connector": connector_json(view)})
