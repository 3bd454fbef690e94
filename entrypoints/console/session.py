"""The console's session: a cookie the service signs with its cookie secret (HMAC-SHA256).

It names the signed-in user (their org, email and the claims the identity adapter decides
admin status from), carries the session's CSRF token and ends at ``expires_at``. It holds
no bearer token: a stolen cookie is not an API credential. An anonymous session (no user)
only carries the CSRF token of the sign-in form.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from connector_core.ports.iam import Principal

COOKIE = "cm_console"
#: a signed-in session lasts at most this long (less when the pasted token expires sooner)
SESSION_SECONDS = 8 * 3600
#: an anonymous session only has to outlive filling in the sign-in form
ANONYMOUS_SECONDS = 3600
#: claims kept in the cookie; a token with more (a huge roles list) is refused at sign-in
MAX_CLAIMS_BYTES = 2048
#: v2: sign-out records moved to keyed names (see :mod:`signouts`); a v1 cookie, counted under
#: the former records, is no session (else one signed out before would count from 0 again)
_CONTEXT = b"connector-manager console session v2\x00"
#: registered claims that say nothing about who the user is
_TIMING_CLAIMS = frozenset({"exp", "iat", "nbf", "jti"})


@frozen
class Session:
    csrf: str
    expires_at: int
    user_id: str | None = None
    org_id: str | None = None
    email: str | None = None
    claims: Mapping[str, Any] = field(factory=dict, repr=False)
    #: the user's sign-out generation when this session began (see :mod:`signouts`)
    generation: int = 0

    @property
    def signed_in(self) -> bool:
        return self.user_id is not None and self.org_id is not None

    @property
    def principal(self) -> Principal:
        assert self.signed_in
        return Principal(user_id=self.user_id, org_id=self.org_id, email=self.email, claims=self.claims)

    @classmethod
    def anonymous(cls, now: int) -> Session:
        return cls(csrf=secrets.token_urlsafe(32), expires_at=now + ANONYMOUS_SECONDS)

    @classmethod
    def for_principal(
        cls, principal: Principal, now: int, *, ends_by: int | None = None, generation: int = 0
    ) -> Session:
        """A new session (and a new CSRF token) for ``principal``, ending after
        :data:`SESSION_SECONDS` or at ``ends_by``, whichever comes first, or when the user
        signs out (their sign-out ``generation`` goes past this one)."""
        end = now + SESSION_SECONDS if ends_by is None else min(ends_by, now + SESSION_SECONDS)
        claims = {k: v for k, v in principal.claims.items() if k not in _TIMING_CLAIMS}
        return cls(
            csrf=secrets.token_urlsafe(32),
            expires_at=end,
            user_id=principal.user_id,
            org_id=principal.org_id,
            email=principal.email,
            claims=claims,
            generation=generation,
        )

    def claims_fit(self) -> bool:
        return len(json.dumps(dict(self.claims), separators=(",", ":"))) <= MAX_CLAIMS_BYTES


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode("utf-8"), _CONTEXT + payload.encode("ascii"), hashlib.sha256).digest())


def encode(session: Session, secret: str) -> str:
    data = {"x": session.csrf, "exp": session.expires_at}
    if session.signed_in:
        data.update({"u": session.user_id, "o": session.org_id, "e": session.email, "c": dict(session.claims)})
        data["g"] = session.generation
    payload = _b64(json.dumps(data, separators=(",", ":")).encode("utf-8"))
    return f"{payload}.{_mac(secret, payload)}"


def decode(cookie: str | None, secret: str, now: int) -> Session | None:
    """The session in ``cookie``, or None when there is none, it is not ours (bad signature)
    or it has ended."""
    if not cookie or not secret or cookie.count(".") != 1 or len(cookie) > 4096:
        return None
    payload, mac = cookie.split(".")
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        return None
    try:
        data = json.loads(_unb64(payload))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("exp"), int) or data["exp"] <= now:
        return None
    csrf = data.get("x")
    if not isinstance(csrf, str) or not csrf:
        return None
    user, org, email, claims, generation = data.get("u"), data.get("o"), data.get("e"), data.get("c"), data.get("g")
    if not (isinstance(user, str) and isinstance(org, str) and isinstance(claims, dict)):
        return Session(csrf=csrf, expires_at=data["exp"])
    return Session(
        csrf=csrf,
        expires_at=data["exp"],
        user_id=user,
        org_id=org,
        email=email if isinstance(email, str) else None,
        claims=claims,
        # a signed-in cookie always has one (v2); 0 is the count of a user who never signed out
        generation=generation if isinstance(generation, int) and not isinstance(generation, bool) else 0,
    )


def csrf_matches(session: Session | None, submitted: str | None) -> bool:
    """The form's CSRF token is this session's (compared in constant time)."""
    if session is None or not submitted:
        return False
    return hmac.compare_digest(session.csrf.encode("utf-8"), submitted.encode("utf-8"))
