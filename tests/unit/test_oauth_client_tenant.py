"""Microsoft's multi-tenant issuer: ``iss`` is checked against the tenant the token names."""

from __future__ import annotations

import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from adapters.http.oauth_client import HttpxOAuthClient
from connector_core.catalog import load_default_catalog
from connector_core.errors import IdTokenInvalid

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
TID = "9188040d-6c67-4c5b-b112-36a304b66dad"


def jwks(request: httpx.Request) -> httpx.Response:
    public = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
    return httpx.Response(200, json={"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]})


def id_token(**claims: object) -> str:
    now = int(time.time())
    base = {
        "iss": f"https://login.microsoftonline.com/{TID}/v2.0",
        "aud": "cid",
        "sub": "s",
        "tid": TID,
        "iat": now,
        "exp": now + 300,
    }
    base.update(claims)
    return jwt.encode(base, KEY, algorithm="RS256", headers={"kid": "k1"})


@pytest.mark.parametrize("tenant", ["contoso.onmicrosoft.com", "common", TID])
async def test_issuer_is_checked_with_the_tokens_tenant(tenant: str) -> None:
    entry = load_default_catalog().get("onedrive")
    assert entry.oauth is not None
    spec = entry.oauth.resolve({"tenantId": tenant})
    async with httpx.AsyncClient(transport=httpx.MockTransport(jwks)) as http:
        client = HttpxOAuthClient(client=http)
        claims = await client.verify_id_token(spec, id_token=id_token(), client_id="cid", nonce=None)
        assert claims["tid"] == TID
        with pytest.raises(IdTokenInvalid):  # iss of another tenant than the token's own
            await client.verify_id_token(
                spec,
                id_token=id_token(iss="https://login.microsoftonline.com/other/v2.0"),
                client_id="cid",
                nonce=None,
            )
        with pytest.raises(IdTokenInvalid):
            await client.verify_id_token(spec, id_token=id_token(tid=None), client_id="cid", nonce=None)
