"""A local fake OAuth 2.0 / OpenID Connect provider served over real HTTP.

In-process::

    with FakeOAuthProvider() as idp:
        idp.register_client("cid", "secret", ["http://localhost/cb"])
        ... point the code under test at idp.discovery_url / idp.token_url ...

In another process (steered over ``/_control/<op>`` JSON endpoints)::

    with FakeProviderProcess() as idp:      # python -m tests.fakes.oauth_provider --port 0
        idp.set_fault("rate_limited", count=2, retry_after=1)

``FakeOAuthProvider``, ``FakeProviderControl`` and ``FakeProviderProcess`` share one API
(``_ProviderAPI``). Token values are never logged or printed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, unquote_plus, urlencode

import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

DEFAULT_SUB = "fake-user-0001"
DEFAULT_EMAIL = "fake.user@example.test"
CODE_TTL = 600
ERROR_FAULTS = ("server_error", "rate_limited", "invalid_grant", "unauthorized_client")
ID_TOKEN_FAULTS = ("wrong_audience", "wrong_issuer", "bad_signature")
FAULT_KINDS = frozenset({*ERROR_FAULTS, *ID_TOKEN_FAULTS, "slow", "access_denied"})
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_REPO_ROOT = Path(__file__).resolve().parents[2]


def s256(verifier: str) -> str:
    """PKCE S256 code challenge for ``verifier``."""
    digest = hashlib.sha256(verifier.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def make_pkce_pair() -> tuple[str, str]:
    """Return ``(code_verifier, code_challenge)`` using S256."""
    verifier = secrets.token_urlsafe(48)
    return verifier, s256(verifier)


class OAuthError(Exception):
    def __init__(
        self,
        error: str,
        description: str = "",
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.error, self.description, self.status = error, description, status
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return JSONResponse(body, status_code=self.status, headers={**_NO_STORE, **self.headers})


@dataclass
class _Client:
    client_id: str
    client_secret: str | None
    redirect_uris: list[str] | None


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    scopes: list[str]
    code_challenge: str | None
    nonce: str | None
    user: dict[str, Any]
    expires_at: float


@dataclass
class _Refresh:
    client_id: str
    scopes: list[str]
    lineage: str
    user: dict[str, Any]
    active: bool = True
    rotated: bool = False


@dataclass
class _Access:
    client_id: str
    scopes: list[str]
    lineage: str | None
    expires_at: float
    revoked: bool = False


@dataclass
class _Fault:
    kind: str
    remaining: int | None
    opts: dict[str, Any] = field(default_factory=dict)

    def endpoints(self) -> list[str]:
        default = ["authorize"] if self.kind == "access_denied" else ["token"]
        return list(self.opts.get("endpoints", default))


class _State:
    """All provider state; every public method takes ``self.lock``."""

    def __init__(self, access_token_ttl: int, rotate_refresh_tokens: bool, always_id_token: bool) -> None:
        self.lock = threading.Lock()
        self.issuer = ""
        self.kid = f"fake-{secrets.token_hex(4)}"
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._wrong_key: rsa.RSAPrivateKey | None = None
        self._defaults: dict[str, Any] = {
            "access_token_ttl": access_token_ttl,
            "rotate_refresh_tokens": rotate_refresh_tokens,
            "always_id_token": always_id_token,
            "reuse_revokes_lineage": False,
        }
        self.op_reset()

    # ---- control operations (callable in-process and via /_control/<op>) ----
    def op_reset(self) -> None:
        with self.lock:
            self.config = dict(self._defaults)
            self.clients: dict[str, _Client] = {}
            self.user: dict[str, Any] = {
                "sub": DEFAULT_SUB,
                "email": DEFAULT_EMAIL,
                "email_verified": True,
            }
            self.scope_override: list[str] | None = None
            self.codes: dict[str, _Code] = {}
            self.used_codes: set[str] = set()
            self.refresh: dict[str, _Refresh] = {}
            self.revoked_lineages: set[str] = set()
            self.access: dict[str, _Access] = {}
            self.faults: dict[str, _Fault] = {}
            self.authorize_log: list[dict[str, str]] = []
            self.refreshes_by_lineage: dict[str, int] = {}
            self.counters = dict.fromkeys(
                (
                    "authorization_code_grants",
                    "refresh_grants",
                    "invalid_grant",
                    "revocations",
                    "revocations_unknown",
                    "refresh_token_reuse",
                    "token_requests",
                    "faults_injected",
                ),
                0,
            )

    def op_register_client(
        self,
        client_id: str,
        client_secret: str | None = None,
        redirect_uris: list[str] | None = None,
    ) -> None:
        with self.lock:
            uris = list(redirect_uris) if redirect_uris is not None else None
            self.clients[client_id] = _Client(client_id, client_secret, uris)

    def op_set_user(self, sub: str, email: str, email_verified: bool = True) -> None:
        with self.lock:
            self.user = {"sub": sub, "email": email, "email_verified": email_verified}

    def op_grant_scopes(self, scopes: list[str] | None) -> None:
        with self.lock:
            self.scope_override = list(scopes) if scopes is not None else None

    def op_issue_code(
        self,
        client_id: str,
        redirect_uri: str,
        scopes: list[str],
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
        nonce: str | None = None,
    ) -> str:
        if code_challenge is not None and (code_challenge_method or "plain") != "S256":
            raise ValueError("only code_challenge_method=S256 is supported")
        with self.lock:
            if client_id not in self.clients:
                raise ValueError(f"unknown client {client_id!r}")
            granted = list(self.scope_override if self.scope_override is not None else scopes)
            code = secrets.token_urlsafe(24)
            self.codes[code] = _Code(
                client_id,
                redirect_uri,
                granted,
                code_challenge,
                nonce,
                dict(self.user),
                time.time() + CODE_TTL,
            )
            return code

    def op_mint_refresh_token(self, client_id: str, scopes: list[str]) -> str:
        with self.lock:
            if client_id not in self.clients:
                raise ValueError(f"unknown client {client_id!r}")
            return self._new_lineage_locked(client_id, list(scopes), dict(self.user))

    def op_revoke_grants(self, client_id: str) -> int:
        """The provider ends every grant of ``client_id`` (an admin revoked the app's access):
        its refresh tokens stop working. Returns how many grants ended."""
        with self.lock:
            lineages = {r.lineage for r in self.refresh.values() if r.client_id == client_id}
            self.revoked_lineages |= lineages
            return len(lineages)

    def op_set_fault(self, kind: str, count: int | None = None, opts: dict[str, Any] | None = None) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError("count must be a positive int or None")
        with self.lock:
            self.faults[kind] = _Fault(kind, count, dict(opts or {}))

    def op_clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def op_active_faults(self) -> list[dict[str, Any]]:
        with self.lock:
            return [{"kind": f.kind, "remaining": f.remaining, "opts": dict(f.opts)} for f in self.faults.values()]

    def op_stats(self) -> dict[str, Any]:
        with self.lock:
            return {**self.counters, "refreshes_by_lineage": dict(self.refreshes_by_lineage)}

    def op_is_access_token_valid(self, token: str) -> bool:
        with self.lock:
            rec = self.access.get(token)
            return (
                rec is not None
                and not rec.revoked
                and time.time() < rec.expires_at
                and rec.lineage not in self.revoked_lineages
            )

    def op_is_refresh_token_valid(self, token: str) -> bool:
        with self.lock:
            rec = self.refresh.get(token)
            return rec is not None and rec.active and rec.lineage not in self.revoked_lineages

    def op_lineage_of(self, refresh_token: str) -> str | None:
        with self.lock:
            rec = self.refresh.get(refresh_token)
            return rec.lineage if rec else None

    def op_authorize_requests(self) -> list[dict[str, str]]:
        with self.lock:
            return [dict(r) for r in self.authorize_log]

    def op_configure(self, **changes: Any) -> dict[str, Any]:
        unknown = set(changes) - set(self._defaults)
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        with self.lock:
            self.config.update(changes)
            return dict(self.config)

    def op_get_config(self) -> dict[str, Any]:
        with self.lock:
            return dict(self.config)

    def dispatch(self, op: str, payload: dict[str, Any]) -> Any:
        method = getattr(self, f"op_{op}", None)
        if method is None:
            raise LookupError(f"unknown control operation {op!r}")
        return method(**payload)

    # ---- internals used by the HTTP handlers ----
    def _new_lineage_locked(self, client_id: str, scopes: list[str], user: dict[str, Any]) -> str:
        token = secrets.token_urlsafe(32)
        lineage = "lin-" + hashlib.sha256(token.encode()).hexdigest()[:16]
        self.refresh[token] = _Refresh(client_id, scopes, lineage, user)
        self.refreshes_by_lineage[lineage] = 0
        return token

    def _new_access_locked(self, client_id: str, scopes: list[str], lineage: str | None) -> str:
        token = secrets.token_urlsafe(32)
        ttl = self.config["access_token_ttl"]
        self.access[token] = _Access(client_id, scopes, lineage, time.time() + ttl)
        return token

    def take_fault(self, kinds: tuple[str, ...] | frozenset[str], endpoint: str) -> _Fault | None:
        """Consume one use of the first active fault among ``kinds`` for ``endpoint``."""
        with self.lock:
            return self._take_fault_locked(kinds, endpoint)

    def _take_fault_locked(self, kinds: Any, endpoint: str) -> _Fault | None:
        for fault in list(self.faults.values()):
            if fault.kind in kinds and endpoint in fault.endpoints():
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        del self.faults[fault.kind]
                self.counters["faults_injected"] += 1
                return fault
        return None

    def count(self, name: str) -> None:
        with self.lock:
            self.counters[name] += 1

    def get_client(self, client_id: str | None) -> _Client | None:
        with self.lock:
            return self.clients.get(client_id) if client_id is not None else None

    def record_authorize(self, params: dict[str, str]) -> None:
        with self.lock:
            self.authorize_log.append(dict(params))

    def authenticate(self, headers: Any, form: dict[str, str]) -> _Client:
        auth = headers.get("authorization", "")
        basic: tuple[str, str] | None = None
        if auth[:6].lower() == "basic ":
            try:
                raw = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise OAuthError("invalid_client", "malformed Basic credentials", 401) from None
            cid, sep, secret = raw.partition(":")
            if not sep:
                raise OAuthError("invalid_client", "malformed Basic credentials", 401)
            basic = (unquote_plus(cid), unquote_plus(secret))
        if basic and "client_secret" in form:
            raise OAuthError("invalid_request", "more than one client authentication method")
        secret_: str | None
        if basic:
            if form.get("client_id", basic[0]) != basic[0]:
                raise OAuthError("invalid_client", "client_id mismatch", 401)
            cid_, secret_ = basic
        else:
            cid_, secret_ = form.get("client_id", ""), form.get("client_secret")
        hdrs = {"WWW-Authenticate": 'Basic realm="fake-oauth"'} if basic else {}
        client = self.get_client(cid_)
        if client is None:
            raise OAuthError("invalid_client", "unknown client", 401, hdrs)
        if client.client_secret is not None and not (
            secret_ is not None and secrets.compare_digest(secret_, client.client_secret)
        ):
            raise OAuthError("invalid_client", "bad client credentials", 401, hdrs)
        return client

    def _id_token_locked(self, client_id: str, user: dict[str, Any], nonce: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": client_id,
            "azp": client_id,
            "sub": user["sub"],
            "email": user["email"],
            "email_verified": user["email_verified"],
            "iat": now,
            "exp": now + int(self.config["access_token_ttl"]),
            "auth_time": now,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        key = self.key
        for kind in ID_TOKEN_FAULTS:
            fault = self._take_fault_locked((kind,), "token")
            if fault is None:
                continue
            if kind == "wrong_audience":
                claims["aud"] = fault.opts.get("audience", "some-other-client")
                claims["azp"] = claims["aud"]
            elif kind == "wrong_issuer":
                claims["iss"] = fault.opts.get("issuer", "https://evil.example.test")
            else:
                if self._wrong_key is None:
                    self._wrong_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                key = self._wrong_key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})

    def _token_body_locked(
        self,
        client: _Client,
        scopes: list[str],
        lineage: str,
        refresh: str | None,
        user: dict[str, Any],
        nonce: str | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self._new_access_locked(client.client_id, scopes, lineage),
            "token_type": "Bearer",
            "expires_in": int(self.config["access_token_ttl"]),
            "scope": " ".join(scopes),
        }
        if refresh is not None:
            body["refresh_token"] = refresh
        if "openid" in scopes or self.config["always_id_token"]:
            body["id_token"] = self._id_token_locked(client.client_id, user, nonce)
        return body

    def grant_code(self, client: _Client, form: dict[str, str]) -> dict[str, Any]:
        code = form.get("code")
        if not code:
            raise OAuthError("invalid_request", "missing code")
        with self.lock:
            rec = self.codes.pop(code, None)
            if rec is None:
                reused = code in self.used_codes
                raise OAuthError("invalid_grant", "code already used" if reused else "unknown code")
            self.used_codes.add(code)
            if rec.expires_at < time.time():
                raise OAuthError("invalid_grant", "code expired")
            if rec.client_id != client.client_id:
                raise OAuthError("invalid_grant", "code was issued to another client")
            if form.get("redirect_uri") != rec.redirect_uri:
                raise OAuthError("invalid_grant", "redirect_uri mismatch")
            if rec.code_challenge is not None:
                verifier = form.get("code_verifier")
                if not verifier:
                    raise OAuthError("invalid_grant", "code_verifier required")
                if not secrets.compare_digest(s256(verifier), rec.code_challenge):
                    raise OAuthError("invalid_grant", "PKCE verification failed")
            refresh = self._new_lineage_locked(client.client_id, rec.scopes, rec.user)
            lineage = self.refresh[refresh].lineage
            self.counters["authorization_code_grants"] += 1
            return self._token_body_locked(client, rec.scopes, lineage, refresh, rec.user, rec.nonce)

    def grant_refresh(self, client: _Client, form: dict[str, str]) -> dict[str, Any]:
        token = form.get("refresh_token")
        if not token:
            raise OAuthError("invalid_request", "missing refresh_token")
        with self.lock:
            rec = self.refresh.get(token)
            if rec is None:
                raise OAuthError("invalid_grant", "unknown refresh token")
            if rec.lineage in self.revoked_lineages:
                raise OAuthError("invalid_grant", "refresh token revoked")
            if not rec.active:
                if rec.rotated:
                    self.counters["refresh_token_reuse"] += 1
                    if self.config["reuse_revokes_lineage"]:
                        self.revoked_lineages.add(rec.lineage)
                raise OAuthError("invalid_grant", "refresh token already used")
            if rec.client_id != client.client_id:
                raise OAuthError("invalid_grant", "refresh token was issued to another client")
            scopes = rec.scopes
            if "scope" in form:
                scopes = form["scope"].split()
                if not set(scopes) <= set(rec.scopes):
                    raise OAuthError("invalid_scope", "scope exceeds the original grant")
            new_refresh: str | None = None
            if self.config["rotate_refresh_tokens"]:
                rec.active, rec.rotated = False, True
                new_refresh = secrets.token_urlsafe(32)
                self.refresh[new_refresh] = _Refresh(client.client_id, rec.scopes, rec.lineage, rec.user)
            self.refreshes_by_lineage[rec.lineage] += 1
            self.counters["refresh_grants"] += 1
            return self._token_body_locked(client, scopes, rec.lineage, new_refresh, rec.user, None)

    def revoke(self, client: _Client, token: str, hint: str | None) -> None:
        with self.lock:
            kinds = ("access", "refresh") if hint == "access_token" else ("refresh", "access")
            for kind in kinds:
                rec = (self.access if kind == "access" else self.refresh).get(token)
                if rec is None:
                    continue
                if rec.client_id != client.client_id:
                    raise OAuthError("unauthorized_client", "token was issued to another client")
                if isinstance(rec, _Refresh):
                    self.revoked_lineages.add(rec.lineage)
                else:
                    rec.revoked = True
                self.counters["revocations"] += 1
                return
            self.counters["revocations_unknown"] += 1


# ----------------------------------------------------------------- HTTP app
def _error_fault_response(fault: _Fault) -> OAuthError:
    if fault.kind == "server_error":
        status = int(fault.opts.get("status", 503))
        err = "temporarily_unavailable" if status == 503 else "server_error"
        return OAuthError(err, "injected fault", status)
    if fault.kind == "rate_limited":
        retry = str(int(fault.opts.get("retry_after", 1)))
        return OAuthError("rate_limited", "injected fault", 429, {"Retry-After": retry})
    return OAuthError(fault.kind, "injected fault", 400)


def build_app(state: _State) -> Starlette:
    async def read_form(request: Request) -> dict[str, str]:
        body = (await request.body()).decode("utf-8", errors="replace")
        return dict(parse_qsl(body, keep_blank_values=True))

    async def apply_pre_faults(endpoint: str) -> None:
        slow = state.take_fault(("slow",), endpoint)
        if slow is not None:
            await asyncio.sleep(float(slow.opts.get("delay", 1.0)))
        fault = state.take_fault(ERROR_FAULTS, endpoint)
        if fault is not None:
            raise _error_fault_response(fault)

    def error_response(exc: OAuthError) -> JSONResponse:
        if exc.error == "invalid_grant":
            state.count("invalid_grant")
        return exc.response()

    async def token(request: Request) -> Response:
        state.count("token_requests")
        try:
            form = await read_form(request)
            await apply_pre_faults("token")
            client = state.authenticate(request.headers, form)
            grant_type = form.get("grant_type")
            if grant_type == "authorization_code":
                body = state.grant_code(client, form)
            elif grant_type == "refresh_token":
                body = state.grant_refresh(client, form)
            else:
                raise OAuthError("unsupported_grant_type", "unsupported grant_type")
        except OAuthError as exc:
            return error_response(exc)
        return JSONResponse(body, headers=_NO_STORE)

    async def revoke(request: Request) -> Response:
        try:
            form = await read_form(request)
            await apply_pre_faults("revoke")
            client = state.authenticate(request.headers, form)
            if not form.get("token"):
                raise OAuthError("invalid_request", "missing token")
            state.revoke(client, form["token"], form.get("token_type_hint"))
        except OAuthError as exc:
            return error_response(exc)
        return Response(status_code=200, headers=_NO_STORE)

    async def authorize(request: Request) -> Response:
        params = dict(request.query_params)
        state.record_authorize(params)
        client = state.get_client(params.get("client_id"))
        if client is None:
            return OAuthError("invalid_client", "unknown client_id").response()
        redirect_uri = params.get("redirect_uri")
        if client.redirect_uris is not None:
            if redirect_uri is None and len(client.redirect_uris) == 1:
                redirect_uri = client.redirect_uris[0]
            elif redirect_uri not in client.redirect_uris:
                return OAuthError("invalid_request", "unregistered redirect_uri").response()
        if not redirect_uri:
            return OAuthError("invalid_request", "missing redirect_uri").response()

        def back(**query: str) -> RedirectResponse:
            if "state" in params:
                query["state"] = params["state"]
            sep = "&" if "?" in redirect_uri else "?"
            return RedirectResponse(f"{redirect_uri}{sep}{urlencode(query)}", status_code=302)

        if params.get("error_mode"):
            return back(error=params["error_mode"])
        slow = state.take_fault(("slow",), "authorize")
        if slow is not None:
            await asyncio.sleep(float(slow.opts.get("delay", 1.0)))
        fault = state.take_fault(("access_denied", *ERROR_FAULTS), "authorize")
        if fault is not None:
            err = "access_denied" if fault.kind == "access_denied" else None
            return back(error=err or _error_fault_response(fault).error)
        if params.get("response_type") != "code":
            return back(error="unsupported_response_type")
        challenge = params.get("code_challenge")
        try:
            code = state.op_issue_code(
                client.client_id,
                redirect_uri,
                params.get("scope", "").split(),
                code_challenge=challenge,
                code_challenge_method=params.get("code_challenge_method") if challenge else None,
                nonce=params.get("nonce"),
            )
        except ValueError:
            return back(
                error="invalid_request",
                error_description="only S256 code_challenge_method is supported",
            )
        return back(code=code)

    async def jwks(request: Request) -> Response:
        jwk = RSAAlgorithm.to_jwk(state.key.public_key(), as_dict=True)
        jwk.update({"kid": state.kid, "use": "sig", "alg": "RS256"})
        return JSONResponse({"keys": [jwk]})

    async def discovery(request: Request) -> Response:
        iss = state.issuer
        return JSONResponse(
            {
                "issuer": iss,
                "authorization_endpoint": f"{iss}/authorize",
                "token_endpoint": f"{iss}/token",
                "revocation_endpoint": f"{iss}/revoke",
                "jwks_uri": f"{iss}/jwks",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "subject_types_supported": ["public"],
                "scopes_supported": ["openid", "email", "profile", "offline_access"],
                "code_challenge_methods_supported": ["S256"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                ],
                "revocation_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                ],
            }
        )

    async def control(request: Request) -> Response:
        op = request.path_params["op"]
        if op == "faults":  # REST-style alias: POST sets, DELETE clears, GET lists
            op = {"POST": "set_fault", "DELETE": "clear_faults"}.get(request.method, "active_faults")
        try:
            payload = await request.json() if await request.body() else {}
            if not isinstance(payload, dict):
                raise TypeError("payload must be a JSON object")
            result = state.dispatch(op, payload)
        except LookupError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"result": result})

    return Starlette(
        routes=[
            Route("/authorize", authorize, methods=["GET"]),
            Route("/token", token, methods=["POST"]),
            Route("/revoke", revoke, methods=["POST"]),
            Route("/jwks", jwks, methods=["GET"]),
            Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
            Route("/_control/{op}", control, methods=["GET", "POST", "DELETE"]),
        ]
    )


# ----------------------------------------------------------------- shared public API
def _config_property(name: str) -> property:
    def getter(self: _ProviderAPI) -> Any:
        return self.get_config()[name]

    def setter(self: _ProviderAPI, value: Any) -> None:
        self.configure(**{name: value})

    return property(getter, setter, doc=f"Provider setting {name!r} (live).")


class _ProviderAPI:
    """API shared by the in-process provider and the HTTP control clients."""

    base_url: str

    def _op(self, op: str, payload: dict[str, Any]) -> Any:
        raise NotImplementedError

    @property
    def issuer(self) -> str:
        return self.base_url

    authorize_url = property(lambda self: f"{self.base_url}/authorize")
    token_url = property(lambda self: f"{self.base_url}/token")
    revocation_url = property(lambda self: f"{self.base_url}/revoke")
    jwks_uri = property(lambda self: f"{self.base_url}/jwks")
    discovery_url = property(lambda self: f"{self.base_url}/.well-known/openid-configuration")

    rotate_refresh_tokens = _config_property("rotate_refresh_tokens")
    always_id_token = _config_property("always_id_token")
    access_token_ttl = _config_property("access_token_ttl")
    reuse_revokes_lineage = _config_property("reuse_revokes_lineage")

    def register_client(
        self, client_id: str, client_secret: str | None, redirect_uris: list[str] | None = None
    ) -> None:
        """``client_secret=None`` registers a public client (PKCE only, no secret)."""
        self._op(
            "register_client",
            {
                "client_id": client_id,
                "client_secret": client_secret,
                "redirect_uris": redirect_uris,
            },
        )

    def set_user(self, sub: str, email: str, email_verified: bool = True) -> None:
        self._op("set_user", {"sub": sub, "email": email, "email_verified": email_verified})

    def grant_scopes(self, scopes: list[str] | None) -> None:
        """Grant exactly ``scopes`` for later authorizations (``None`` = grant what's asked)."""
        self._op("grant_scopes", {"scopes": scopes})

    def issue_code(
        self,
        client_id: str,
        redirect_uri: str,
        scopes: list[str],
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
        nonce: str | None = None,
    ) -> str:
        return str(
            self._op(
                "issue_code",
                {
                    "client_id": client_id,
                    "redirect_uri": redirect_uri,
                    "scopes": scopes,
                    "code_challenge": code_challenge,
                    "code_challenge_method": code_challenge_method,
                    "nonce": nonce,
                },
            )
        )

    def mint_refresh_token(self, client_id: str, scopes: list[str]) -> str:
        return str(self._op("mint_refresh_token", {"client_id": client_id, "scopes": scopes}))

    def revoke_grants(self, client_id: str) -> int:
        """End every grant of ``client_id`` at the provider (its refresh tokens stop working)."""
        return int(self._op("revoke_grants", {"client_id": client_id}))

    def set_fault(self, kind: str, count: int | None = None, **opts: Any) -> None:
        self._op("set_fault", {"kind": kind, "count": count, "opts": opts})

    def clear_faults(self) -> None:
        self._op("clear_faults", {})

    def active_faults(self) -> list[dict[str, Any]]:
        return list(self._op("active_faults", {}))

    def stats(self) -> dict[str, Any]:
        return dict(self._op("stats", {}))

    def is_access_token_valid(self, token: str) -> bool:
        return bool(self._op("is_access_token_valid", {"token": token}))

    def is_refresh_token_valid(self, token: str | None) -> bool:
        """Whether ``token`` is a live refresh token (a missing one is not)."""
        return token is not None and bool(self._op("is_refresh_token_valid", {"token": token}))

    def lineage_of(self, refresh_token: str) -> str | None:
        result = self._op("lineage_of", {"refresh_token": refresh_token})
        return None if result is None else str(result)

    @property
    def authorize_requests(self) -> list[dict[str, str]]:
        return list(self._op("authorize_requests", {}))

    def configure(self, **settings: Any) -> dict[str, Any]:
        return dict(self._op("configure", settings))

    def get_config(self) -> dict[str, Any]:
        return dict(self._op("get_config", {}))

    def reset(self) -> None:
        """Forget clients, tokens, faults, stats and settings (the signing key stays)."""
        self._op("reset", {})


class FakeOAuthProvider(_ProviderAPI):
    """The provider, served by uvicorn in a daemon thread of this process."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        access_token_ttl: int = 3600,
        rotate_refresh_tokens: bool = True,
        always_id_token: bool = True,
    ) -> None:
        self._state = _State(access_token_ttl, rotate_refresh_tokens, always_id_token)
        self.app = build_app(self._state)
        self.host, self._port = host, port
        self.base_url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def kid(self) -> str:
        return self._state.kid

    def _op(self, op: str, payload: dict[str, Any]) -> Any:
        return self._state.dispatch(op, payload)

    def start(self, timeout: float = 10.0) -> Self:
        if self._server is not None:
            raise RuntimeError("provider already started")
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto is TCP; without it, Nagle + delayed ACK adds ~40 ms to keep-alive requests.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._port))
        except OSError:
            sock.close()
            raise
        port = sock.getsockname()[1]
        self.base_url = self._state.issuer = f"http://{self.host}:{port}"
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"fake-oauth-{port}")
        self._server, self._thread, self._sock = server, thread, sock
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("fake OAuth provider failed to start")
            time.sleep(0.01)
        with socket.create_connection((self.host, port), timeout=timeout):
            pass
        return self

    def stop(self, timeout: float = 10.0) -> None:
        server, thread, sock = self._server, self._thread, self._sock
        self._server = self._thread = self._sock = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(timeout)
        if sock is not None:
            sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeProviderControl(_ProviderAPI):
    """Steer a provider running elsewhere through its ``/_control`` endpoints."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def _op(self, op: str, payload: dict[str, Any]) -> Any:
        resp = self._http.post(f"/_control/{op}", json=payload)
        if resp.status_code != 200:
            raise ValueError(f"control {op} failed: {resp.status_code} {resp.text}")
        return resp.json()["result"]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeProviderProcess(FakeProviderControl):
    """Run ``python -m tests.fakes.oauth_provider`` as a child process and control it."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", startup_timeout: float = 20.0) -> None:
        cmd = [
            sys.executable,
            "-m",
            "tests.fakes.oauth_provider",
            "--host",
            host,
            "--port",
            str(port),
        ]
        self.proc = subprocess.Popen(cmd, cwd=_REPO_ROOT, stdout=subprocess.PIPE, text=True)
        try:
            base_url = self._wait_ready(startup_timeout)
        except BaseException:
            self._terminate()
            raise
        super().__init__(base_url)

    def _wait_ready(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                if not sel.select(left):
                    continue
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError("fake OAuth provider process exited before READY")
                if line.startswith("READY "):
                    return line.split()[1]
        raise RuntimeError("fake OAuth provider process did not become ready")

    def _terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def close(self) -> None:
        super().close()
        self._terminate()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="ID:SECRET",
        help="register a client (repeatable)",
    )
    parser.add_argument("--no-rotate", action="store_true", help="do not rotate refresh tokens")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    provider = FakeOAuthProvider(args.host, args.port, rotate_refresh_tokens=not args.no_rotate)
    for spec in args.client:
        cid, _, secret = spec.partition(":")
        provider.register_client(cid, secret or None)
    provider.start()
    print(f"READY {provider.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        with contextlib.suppress(Exception):
            provider.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
