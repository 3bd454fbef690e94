"""The OAuth client's per-issuer state is bounded: one discovery document and one JWKS per
Microsoft tenant would otherwise be kept forever, for every tenant ever seen."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from adapters.http.oauth_client import HttpxOAuthClient
from adapters.lru import LruCache, SingleFlight
from connector_core.catalog import load_default_catalog

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC = {**json.loads(RSAAlgorithm.to_jwk(KEY.public_key())), "kid": "k1", "use": "sig", "alg": "RS256"}


class Provider:
    """Every tenant's discovery document and JWKS; counts what was fetched."""

    def __init__(self) -> None:
        self.fetched: Counter[str] = Counter()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.fetched[str(request.url)] = self.fetched[str(request.url)] + 1
        if request.url.path.endswith("/.well-known/openid-configuration"):
            issuer = str(request.url).removesuffix("/.well-known/openid-configuration")
            return httpx.Response(200, json={"issuer": issuer, "jwks_uri": issuer + "/keys"})
        return httpx.Response(200, json={"keys": [PUBLIC]})


def issuer(n: int) -> str:
    return f"https://login.example/tenant-{n}/v2.0"


async def test_discovery_documents_are_bounded_least_recently_used_first() -> None:
    provider = Provider()
    async with httpx.AsyncClient(transport=httpx.MockTransport(provider)) as http:
        client = HttpxOAuthClient(client=http)
        for n in range(300):  # more tenants than the default bound (256)
            await client.discover(issuer(n))
        await client.discover(issuer(299))  # recent: still cached
        assert provider.fetched[issuer(299) + "/.well-known/openid-configuration"] == 1
        await client.discover(issuer(0))  # the oldest was dropped: fetched again
        assert provider.fetched[issuer(0) + "/.well-known/openid-configuration"] == 2


def id_token(tenant: str) -> str:
    now = int(time.time())
    claims = {
        "iss": f"https://login.microsoftonline.com/{tenant}/v2.0",
        "aud": "cid",
        "sub": "s",
        "tid": tenant,
        "iat": now,
        "exp": now + 300,
    }
    return jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "k1"})


async def test_key_sets_are_bounded_least_recently_used_first() -> None:
    """Microsoft: one JWKS URL per tenant (the catalog's ``{tenantId}``)."""
    oauth = load_default_catalog().get("onedrive").oauth
    assert oauth is not None
    provider = Provider()

    def keys_of(n: int) -> str:
        return f"https://login.microsoftonline.com/tenant-{n}/discovery/v2.0/keys"

    async with httpx.AsyncClient(transport=httpx.MockTransport(provider)) as http:
        client = HttpxOAuthClient(client=http, max_cached_documents=5)

        async def verify(n: int) -> None:
            spec = oauth.resolve({"tenantId": f"tenant-{n}"})
            await client.verify_id_token(spec, id_token=id_token(f"tenant-{n}"), client_id="cid", nonce=None)

        for n in range(6):
            await verify(n)
        await verify(5)
        assert provider.fetched[keys_of(5)] == 1
        await verify(0)
        assert provider.fetched[keys_of(0)] == 2


def test_lru_cache_keeps_the_most_recently_used() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (1, None, 3, 2)
    with pytest.raises(ValueError):
        LruCache(0)


async def test_single_flight_serialises_one_key_and_forgets_it_afterwards() -> None:
    flights: SingleFlight[str] = SingleFlight()
    inside: list[str] = []
    release = asyncio.Event()

    async def hold(key: str, name: str) -> None:
        async with flights.hold(key):
            inside.append(name)
            await release.wait()

    first = asyncio.create_task(hold("k", "first"))
    second = asyncio.create_task(hold("k", "second"))
    other = asyncio.create_task(hold("other", "other"))
    while len(inside) < 2:
        await asyncio.sleep(0)
    assert sorted(inside) == ["first", "other"]  # the second caller of "k" waits
    assert len(flights) == 2
    release.set()
    await asyncio.gather(first, second, other)
    assert inside[-1] == "second"
    assert len(flights) == 0  # nothing kept for keys nobody holds
