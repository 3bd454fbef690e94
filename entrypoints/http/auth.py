"""Bearer tokens: user JWTs (HS256, the service's JWT secret) and scoped service JWTs."""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Callable
from typing import Any

import jwt

from connector_core.errors import PermissionDenied, Unauthenticated
from connector_core.ports.iam import IdentityAccess, Principal

ALGORITHM = "HS256"
FETCH_CONFIG = "fetch:config"


class Access(enum.Enum):
    PUBLIC = "public"
    USER = "user"  # any authenticated user of an org
    ADMIN = "admin"  # an org admin
    SCOPED = "scoped"  # a service token whose scopes contain fetch:config


REALM = "connector-manager"


class MissingToken(Unauthenticated):
    """No credentials at all (RFC 6750: the challenge then carries no error code)."""


def challenge(exc: Unauthenticated | None = None) -> str:
    """The ``WWW-Authenticate`` value of a 401: Bearer, this realm, and ``invalid_token`` when a
    token was given but refused (RFC 6750 section 3)."""
    if exc is None or isinstance(exc, MissingToken):
        return f'Bearer realm="{REALM}"'
    return f'Bearer realm="{REALM}", error="invalid_token"'


def bearer(header: str | None) -> str:
    if not header:
        raise MissingToken(
            "Authorization header with a Bearer token is required"
            " (`connector-manager token --help` prints one for this data dir)"
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization header must be 'Bearer <token>'")
    return token.strip()


class _BadSignature(Unauthenticated):
    """Signed with another secret (perhaps the other kind of token's)."""


#: tokens already verified, by (token, secret, expiry required): their claims and expiry (as
#: PyJWT reads it: ``int(exp)``, None without one); at most _VERIFIED_MAX
_VERIFIED: dict[tuple[str, str, bool], tuple[dict[str, Any], int | None]] = {}
_VERIFIED_MAX = 4096
_now = time.time  # the same clock PyJWT checks ``exp`` against


def _decode(token: str, secret: str, *, require_expiry: bool = True) -> dict[str, Any]:
    """The claims of a token signed with ``secret``. A token is parsed and its signature checked
    once; later uses of the same token (with the same secret) only check its expiry again, as
    the first check did (expired when ``exp`` is not after now)."""
    key = (token, secret, require_expiry)
    known = _VERIFIED.get(key)
    if known is not None:
        claims, exp = known
        if exp is None or exp > _now():
            return dict(claims)
        _VERIFIED.pop(key, None)
        raise Unauthenticated("token expired")
    claims = _verify(token, secret, require_expiry=require_expiry)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        with contextlib.suppress(StopIteration, RuntimeError, KeyError):  # another thread got there
            del _VERIFIED[next(iter(_VERIFIED))]
    _VERIFIED[key] = (dict(claims), int(claims["exp"]) if "exp" in claims else None)
    return claims


def _verify(token: str, secret: str, *, require_expiry: bool) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthenticated("malformed token") from None
    if header.get("alg") != ALGORITHM:
        raise Unauthenticated(f"token algorithm must be {ALGORITHM}")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp"] if require_expiry else []}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token expired") from None
    except jwt.InvalidSignatureError:
        raise _BadSignature("invalid token") from None
    except jwt.PyJWTError:
        raise Unauthenticated("invalid token") from None
    return claims


def user_principal(token: str, secret: str) -> Principal:
    claims = _decode(token, secret)
    user, org = claims.get("userId"), claims.get("orgId")
    if not isinstance(user, str) or not user or not isinstance(org, str) or not org:
        raise Unauthenticated("token lacks userId or orgId")
    email = claims.get("email")
    return Principal(user_id=user, org_id=org, email=email if isinstance(email, str) else None, claims=claims)


def scoped_principal(token: str, secret: str, *, require_expiry: bool = True) -> Principal:
    """A service caller. ``require_expiry=False`` (the compatibility profile) also takes tokens
    without ``exp``, as the existing deployment's Python services mint them; one with ``exp``
    is still refused once expired."""
    claims = _decode(token, secret, require_expiry=require_expiry)
    scopes = claims.get("scopes")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise Unauthenticated("scoped token lacks a scopes list")
    if FETCH_CONFIG not in scopes:
        raise PermissionDenied(f"scoped token lacks the {FETCH_CONFIG} scope")
    # A token without the claim is a service token for every org; one whose claim is present
    # but not an org id (a number, a list, "", null) is refused: read as "unbound", it would
    # open every org's credentials to a token meant for one.
    org = claims.get("orgId")
    if "orgId" in claims and not (isinstance(org, str) and org):
        raise Unauthenticated("scoped token has an orgId claim that is not an org id")
    return Principal(
        user_id=None,
        org_id=org,
        scopes=frozenset(scopes),
        claims=claims,
    )


#: what a caller holding the other kind of token is told to use instead
_USER_TOKEN_HINT = (
    "this route needs a user token (`connector-manager token --org ORG --user USER --email EMAIL`),"
    " not a scoped service token"
)
_SCOPED_TOKEN_HINT = "this route needs a scoped service token (`connector-manager token --scoped`), not a user token"


def _signed_with(token: str, secret: str) -> bool:
    try:
        jwt.decode(token, secret, algorithms=[ALGORITHM], options={"verify_exp": False})
    except jwt.PyJWTError:
        return False
    return True


def _as_kind(decode: Callable[[str, str], Principal], token: str, secret: str, other: str, hint: str) -> Principal:
    """``decode(token, secret)``; a token signed with the other kind's secret is refused with a
    message naming the kind of token the route needs."""
    try:
        return decode(token, secret)
    except _BadSignature:
        if _signed_with(token, other):
            raise Unauthenticated(hint) from None
        raise Unauthenticated("invalid token") from None


async def authenticate(
    access: Access,
    header: str | None,
    *,
    jwt_secret: str,
    scoped_secret: str,
    iam: IdentityAccess,
    scoped_without_expiry: bool = False,
) -> Principal | None:
    if access is Access.PUBLIC:
        return None
    token = bearer(header)
    if access is Access.SCOPED:
        expiry = not scoped_without_expiry

        def scoped(t: str, s: str) -> Principal:
            return scoped_principal(t, s, require_expiry=expiry)

        return _as_kind(scoped, token, scoped_secret, jwt_secret, _SCOPED_TOKEN_HINT)
    principal = _as_kind(user_principal, token, jwt_secret, scoped_secret, _USER_TOKEN_HINT)
    if access is Access.ADMIN and not await iam.is_admin(principal):
        raise PermissionDenied("Admin privileges are required")
    return principal


def _an_id(name: str, value: str) -> str:
    """A claim that names an org or a user: a blank one is a caller's mistake (an unset variable),
    never "no such claim" -- for a scoped token that would mean "every org"."""
    if not value.strip():
        raise ValueError(f"{name} must not be blank")
    return value


def issue_user_token(secret: str, *, user_id: str, org_id: str, email: str, admin: bool, ttl: int, now: int) -> str:
    _an_id("user_id", user_id)
    _an_id("org_id", org_id)
    claims: dict[str, Any] = {
        "userId": user_id,
        "orgId": org_id,
        "email": email,
        "iat": now,
        "exp": now + ttl,
    }
    if admin:
        claims["isAdmin"] = True
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def issue_scoped_token(secret: str, *, scopes: list[str], ttl: int, now: int, org_id: str | None = None) -> str:
    """A service token; ``org_id=None`` (and only None) makes one for every org."""
    claims: dict[str, Any] = {"scopes": scopes, "iat": now, "exp": now + ttl}
    if org_id is not None:
        claims["orgId"] = _an_id("org_id", org_id)
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
