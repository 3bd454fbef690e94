"""Tests for the fake OAuth 2.0 / OIDC provider used by the rest of the suite."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from tests.fakes.oauth_provider import (
    FakeOAuthProvider,
    FakeProviderControl,
    FakeProviderProcess,
    make_pkce_pair,
)

CID, SECRET = "client-a", "s3cret-a"
REDIRECT = "http://localhost:8765/callback"
Idp = FakeOAuthProvider | FakeProviderControl


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeOAuthProvider]:
    with FakeOAuthProvider() as idp:
        yield idp


@pytest.fixture
def idp(provider: FakeOAuthProvider) -> FakeOAuthProvider:
    provider.reset()
    provider.register_client(CID, SECRET, [REDIRECT])
    return provider


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(follow_redirects=False, timeout=10) as client:
        yield client


def _basic(cid: str = CID, secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()}


def _authorize(http: httpx.Client, idp: Idp, **params: str) -> dict[str, list[str]]:
    query = {
        "response_type": "code",
        "client_id": CID,
        "redirect_uri": REDIRECT,
        "scope": "openid email",
        "state": "st-1",
        **params,
    }
    resp = http.get(idp.authorize_url, params=query)
    assert resp.status_code == 302, resp.text
    location = resp.headers["location"]
    assert location.startswith(REDIRECT)
    return parse_qs(urlsplit(location).query)


def _code_grant(http: httpx.Client, idp: Idp, code: str, **extra: str) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **extra}
    return http.post(idp.token_url, data=form, headers=_basic())


def _refresh(http: httpx.Client, idp: Idp, token: str) -> httpx.Response:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": token,
        "client_id": CID,
        "client_secret": SECRET,
    }
    return http.post(idp.token_url, data=form)


def _tokens(http: httpx.Client, idp: Idp, scopes: list[str] | None = None) -> dict[str, Any]:
    code = idp.issue_code(CID, REDIRECT, scopes or ["openid", "email"])
    resp = _code_grant(http, idp, code)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _decode(idp: Idp, id_token: str, **kw: Any) -> dict[str, Any]:
    key = jwt.PyJWKClient(idp.jwks_uri, cache_keys=False).get_signing_key_from_jwt(id_token)
    return jwt.decode(
        id_token,
        key.key,
        algorithms=["RS256"],
        audience=kw.pop("audience", CID),
        issuer=kw.pop("issuer", idp.issuer),
        **kw,
    )


def test_discovery_document(idp: FakeOAuthProvider, http: httpx.Client) -> None:
    doc = http.get(idp.discovery_url).json()
    assert doc["issuer"] == idp.issuer == idp.base_url
    assert doc["authorization_endpoint"] == idp.authorize_url
    assert doc["token_endpoint"] == idp.token_url
    assert doc["revocation_endpoint"] == idp.revocation_url
    assert doc["jwks_uri"] == idp.jwks_uri
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "code" in doc["response_types_supported"]
    keys = http.get(idp.jwks_uri).json()["keys"]
    assert [k["kid"] for k in keys] == [idp.kid]


def test_code_flow_with_pkce_and_id_token(idp: FakeOAuthProvider, http: httpx.Client) -> None:
    idp.set_user(sub="user-42", email="u42@example.test")
    verifier, challenge = make_pkce_pair()
    query = _authorize(
        http,
        idp,
        code_challenge=challenge,
        code_challenge_method="S256",
        nonce="n-123",
        extra_param="kept",
    )
    assert query["state"] == ["st-1"]
    recorded = idp.authorize_requests
    assert recorded[-1]["extra_param"] == "kept" and recorded[-1]["code_challenge"] == challenge

    resp = _code_grant(http, idp, query["code"][0], code_verifier=verifier)
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "openid email"
    assert idp.is_access_token_valid(body["access_token"])
    assert not idp.is_access_token_valid("not-a-token")
    assert idp.is_refresh_token_valid(body["refresh_token"])
    claims = _decode(idp, body["id_token"])
    assert claims["sub"] == "user-42" and claims["email"] == "u42@example.test"
    assert claims["email_verified"] is True and claims["nonce"] == "n-123"
    assert jwt.get_unverified_header(body["id_token"])["kid"] == idp.kid
    assert idp.stats()["authorization_code_grants"] == 1


def test_pkce_verifier_required_and_checked(idp: FakeOAuthProvider, http: httpx.Client) -> None:
    verifier, challenge = make_pkce_pair()
    code = idp.issue_code(CID, REDIRECT, ["openid"], challenge, "S256")
    resp = _code_grant(http, idp, code)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    code = idp.issue_code(CID, REDIRECT, ["openid"], challenge, "S256")
    resp = _code_grant(http, idp, code, code_verifier=verifier + "x")
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    query = _authorize(http, idp, code_challenge=challenge, code_challenge_method="plain")
    assert query["error"] == ["invalid_request"]
    assert idp.stats()["invalid_grant"] == 2


def test_code_is_single_use_and_bound_to_redirect_uri(idp: FakeOAuthProvider, http: httpx.Client) -> None:
    code = _authorize(http, idp)["code"][0]
    assert _code_grant(http, idp, code).status_code == 200
    again = _code_grant(http, idp, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    code = idp.issue_code(CID, REDIRECT, ["openid"])
    resp = _code_grant(http, idp, code, redirect_uri="http://localhost:8765/other")
    assert resp.json()["error"] == "invalid_grant"
    assert idp.stats()["invalid_grant"] == 2


def test_authorize_validation_and_denial(idp: FakeOAuthProvider, http: httpx.Client) -> None:
    bad_redirect = http.get(
        idp.authorize_url,
        params={"response_type": "code", "client_id": CID, "redirect_uri": "http://evil.test/cb"},
    )
    assert bad_redirect.status_code == 400
    unknown = http.get(idp.authorize_url, params={"response_type": "code", "client_id": "nope"})
    assert unknown.status_code == 400
    assert _authorize(http, idp, response_type="token")["error"] == ["unsupported_response_type"]
    denied = _authorize(http, idp, error_mode="access_denied")
    assert denied == {"error": ["access_denied"], "state": ["st-1"]}
    idp.set_fault("access_denied", count=1)
    assert _authorize(http, idp)["error"] == ["access_denied"]
    assert "code" in _authorize(http, idp)
    assert len(idp.authorize_requests) == 6


def test_grant_fewer_scopes(idp: FakeOAuthProvider, http: httpx.Client) -> None:
    idp.grant_scopes(["openid"])
    code = _authorize(http, idp, scope="openid email calendar.write")["code"][0]
    assert _code_grant(http, idp, code).json()["scope"] == "openid"
    idp.grant_scopes(None)
    code = _authorize(http, idp, scope="openid calendar.write")["code"][0]
    assert _code_grant(http, idp, code).json()["scope"] == "openid calendar.write"


def test_client_authentication(idp: FakeOAuthProvider, http: httpx.Client) -> None:
    code = idp.issue_code(CID, REDIRECT, ["email"])
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    wrong = http.post(idp.token_url, data=form, headers=_basic(secret="wrong"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    unknown = http.post(idp.token_url, data={**form, "client_id": "x", "client_secret": "y"})
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"
    ok = http.post(idp.token_url, data={**form, "client_id": CID, "client_secret": SECRET})
    assert ok.status_code == 200
    # always_id_token defaults to True even without the openid scope.
    assert "id_token" in ok.json()
    idp.always_id_token = False
    assert "id_token" not in _tokens(http, idp, ["email"])


def test_refresh_rotation_counts_lineages(idp: FakeOAuthProvider, http: httpx.Client) -> None:
    first = _tokens(http, idp)["refresh_token"]
    lineage = idp.lineage_of(first)
    assert lineage is not None
    second = _refresh(http, idp, first).json()
    assert second["refresh_token"] != first and idp.is_access_token_valid(second["access_token"])
    assert second["scope"] == "openid email" and second["expires_in"] == 3600
    third = _refresh(http, idp, second["refresh_token"]).json()
    assert idp.lineage_of(third["refresh_token"]) == lineage
    reuse = _refresh(http, idp, first)
    assert reuse.status_code == 400 and reuse.json() == {
        "error": "invalid_grant",
        "error_description": "refresh token already used",
    }
    unknown = _refresh(http, idp, "never-issued")
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_grant"
    stats = idp.stats()
    assert stats["refreshes_by_lineage"] == {lineage: 2}
    assert stats["refresh_grants"] == 2 and stats["invalid_grant"] == 2
    assert stats["refresh_token_reuse"] == 1
    # Reuse does not kill the lineage unless asked to.
    assert _refresh(http, idp, third["refresh_token"]).status_code == 200


def test_non_rotating_refresh_tokens(idp: FakeOAuthProvider, http: httpx.Client) -> None:
    idp.rotate_refresh_tokens = False
    assert idp.rotate_refresh_tokens is False
    token = _tokens(http, idp)["refresh_token"]
    for _ in range(2):
        body = _refresh(http, idp, token).json()
        assert "refresh_token" not in body and idp.is_access_token_valid(body["access_token"])
    assert idp.stats()["refreshes_by_lineage"] == {idp.lineage_of(token): 2}


def test_minted_tokens_refreshed_concurrently(idp: FakeOAuthProvider) -> None:
    tokens = [idp.mint_refresh_token(CID, ["email"]) for _ in range(200)]

    with httpx.Client(timeout=10) as client, ThreadPoolExecutor(max_workers=16) as pool:
        codes = pool.map(lambda tok: _refresh(client, idp, tok).status_code, tokens)
        assert set(codes) == {200}
    by_lineage = idp.stats()["refreshes_by_lineage"]
    assert len(by_lineage) == 200 and set(by_lineage.values()) == {1}


@pytest.mark.parametrize(
    ("kind", "opts", "status", "error"),
    [
        ("server_error", {}, 503, "temporarily_unavailable"),
        ("server_error", {"status": 500}, 500, "server_error"),
        ("rate_limited", {"retry_after": 7}, 429, "rate_limited"),
        ("invalid_grant", {}, 400, "invalid_grant"),
        ("unauthorized_client", {}, 400, "unauthorized_client"),
    ],
)
def test_error_faults(
    idp: FakeOAuthProvider,
    http: httpx.Client,
    kind: str,
    opts: dict[str, Any],
    status: int,
    error: str,
) -> None:
    idp.rotate_refresh_tokens = False
    token = idp.mint_refresh_token(CID, ["email"])
    idp.set_fault(kind, count=2, **opts)
    for _ in range(2):
        resp = _refresh(http, idp, token)
        assert resp.status_code == status and resp.json()["error"] == error
        if kind == "rate_limited":
            assert resp.headers["retry-after"] == "7"
    assert _refresh(http, idp, token).status_code == 200
    idp.set_fault(kind, **opts)  # unlimited until cleared
    for _ in range(3):
        assert _refresh(http, idp, token).status_code == status
    idp.clear_faults()
    assert idp.active_faults() == []
    assert _refresh(http, idp, token).status_code == 200


def test_slow_fault_does_not_block_other_requests(idp: FakeOAuthProvider) -> None:
    token = idp.mint_refresh_token(CID, ["email"])
    other = idp.mint_refresh_token(CID, ["email"])
    idp.set_fault("slow", count=1, delay=1.5)
    results: dict[str, float] = {}

    def slow_call() -> None:
        start = time.monotonic()
        with httpx.Client(timeout=10) as client:
            assert _refresh(client, idp, token).status_code == 200
        results["slow"] = time.monotonic() - start

    thread = threading.Thread(target=slow_call)
    thread.start()
    deadline = time.monotonic() + 5
    while idp.active_faults() and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.monotonic()
    with httpx.Client(timeout=10) as client:
        assert _refresh(client, idp, other).status_code == 200
    fast = time.monotonic() - start
    thread.join()
    assert results["slow"] >= 1.4 and fast < 1.0


def test_id_token_faults(idp: FakeOAuthProvider, http: httpx.Client) -> None:
    idp.set_fault("wrong_audience", count=1)
    with pytest.raises(jwt.InvalidAudienceError):
        _decode(idp, _tokens(http, idp)["id_token"])
    idp.set_fault("wrong_issuer", count=1, issuer="https://elsewhere.test")
    with pytest.raises(jwt.InvalidIssuerError):
        _decode(idp, _tokens(http, idp)["id_token"])
    idp.set_fault("bad_signature", count=1)
    bad = _tokens(http, idp)["id_token"]
    assert jwt.get_unverified_header(bad)["kid"] == idp.kid
    with pytest.raises(jwt.InvalidSignatureError):
        _decode(idp, bad)
    assert _decode(idp, _tokens(http, idp)["id_token"])["aud"] == CID
    assert idp.stats()["faults_injected"] == 3


def test_revocation(idp: FakeOAuthProvider, http: httpx.Client) -> None:
    idp.register_client("client-b", "s3cret-b")
    body = _tokens(http, idp)
    access, refresh = body["access_token"], body["refresh_token"]
    form = {"token": access, "token_type_hint": "access_token"}
    other = http.post(idp.revocation_url, data=form, headers=_basic("client-b", "s3cret-b"))
    assert other.status_code == 400 and idp.is_access_token_valid(access)
    assert http.post(idp.revocation_url, data=form, headers=_basic(CID, "wrong")).status_code == 401
    assert http.post(idp.revocation_url, data=form, headers=_basic()).status_code == 200
    assert not idp.is_access_token_valid(access)

    body = _refresh(http, idp, refresh).json()
    new_refresh, new_access = body["refresh_token"], body["access_token"]
    resp = http.post(idp.revocation_url, data={"token": new_refresh, "client_id": CID, "client_secret": SECRET})
    assert resp.status_code == 200
    assert not idp.is_refresh_token_valid(new_refresh)
    assert not idp.is_access_token_valid(new_access)  # the whole grant is revoked
    dead = _refresh(http, idp, new_refresh)
    assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"
    unknown = http.post(idp.revocation_url, data={"token": "unknown"}, headers=_basic())
    assert unknown.status_code == 200
    stats = idp.stats()
    assert stats["revocations"] == 2 and stats["revocations_unknown"] == 1


def test_access_token_expiry(idp: FakeOAuthProvider, http: httpx.Client) -> None:
    idp.access_token_ttl = 0
    body = _tokens(http, idp)
    assert body["expires_in"] == 0 and not idp.is_access_token_valid(body["access_token"])


def test_in_process_validation_errors(idp: FakeOAuthProvider) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        idp.set_fault("meltdown")
    with pytest.raises(ValueError, match="unknown client"):
        idp.mint_refresh_token("nobody", [])


@pytest.mark.slow
def test_subprocess_mode_with_control_endpoints(http: httpx.Client) -> None:
    with FakeProviderProcess() as remote:
        assert http.get(remote.discovery_url).json()["issuer"] == remote.issuer
        remote.register_client(CID, SECRET, [REDIRECT])
        remote.set_user(sub="remote-user", email="r@example.test")
        verifier, challenge = make_pkce_pair()
        code = remote.issue_code(CID, REDIRECT, ["openid"], challenge, "S256", nonce="nn")
        resp = http.post(
            remote.token_url,
            headers=_basic(),
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
        )
        body = resp.json()
        assert resp.status_code == 200 and remote.is_access_token_valid(body["access_token"])
        claims = _decode(remote, body["id_token"])
        assert claims["sub"] == "remote-user" and claims["nonce"] == "nn"

        # The raw REST-style fault endpoint, as another process would use it.
        set_resp = http.post(
            f"{remote.base_url}/_control/faults",
            json={"kind": "rate_limited", "count": 1, "opts": {"retry_after": 3}},
        )
        assert set_resp.status_code == 200
        assert http.get(f"{remote.base_url}/_control/faults").json()["result"][0]["kind"] == ("rate_limited")
        limited = _refresh(http, remote, body["refresh_token"])
        assert limited.status_code == 429 and limited.headers["retry-after"] == "3"

        remote.rotate_refresh_tokens = False
        assert remote.get_config()["rotate_refresh_tokens"] is False
        again = _refresh(http, remote, body["refresh_token"])
        assert again.status_code == 200 and "refresh_token" not in again.json()
        stats = remote.stats()
        assert stats["refresh_grants"] == 1 and stats["faults_injected"] == 1
        with pytest.raises(ValueError, match="unknown fault kind"):
            remote.set_fault("meltdown")

        with FakeProviderControl(remote.base_url) as control:
            control.clear_faults()
            minted = control.mint_refresh_token(CID, ["email"])
            assert control.is_refresh_token_valid(minted)
            assert len(control.stats()["refreshes_by_lineage"]) == 2
    assert remote.proc.returncode is not None
