"""The default identity-and-access adapter: the user token's own claims say who is an admin."""

from __future__ import annotations

from connector_core.ports.iam import Principal


class ClaimAdminIam:
    """Admin when the user token says so (``isAdmin: true``, ``role: "admin"`` or ``"admin"``
    in ``roles``)."""

    async def is_admin(self, principal: Principal) -> bool:
        claims = principal.claims
        if claims.get("isAdmin") is True:
            return True
        role = claims.get("role")
        roles = claims.get("roles")
        return role == "admin" or (isinstance(roles, list) and "admin" in roles)
