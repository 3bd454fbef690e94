"""Malformed, oversized and hostile requests get clear 4xx answers, never a 500."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from urllib.parse import quote

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import Api

P = "/api/v1/connectors"


async def test_malformed_json(api: Api) -> None:
    r = await api.client.put(
        f"{P}/config/jira",
        content=b"{not json",
        headers={**api.admin, "content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_json_that_is_not_an_object(api: Api) -> None:
    r = await api.client.put(f"{P}/config/jira", json=[1, 2], headers=api.admin)
    assert r.status_code == 400


async def test_wrong_content_type(api: Api) -> None:
    r = await api.client.put(
        f"{P}/config/jira",
        content=b"baseUrl=x",
        headers={**api.admin, "content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415 and r.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_body_over_one_mib(api: Api) -> None:
    big = b'{"baseUrl": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    r = await api.client.put(f"{P}/config/jira", content=big, headers={**api.admin, "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_body_over_one_mib_without_content_length(api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 65536

    r = await api.client.put(
        f"{P}/config/jira",
        content=chunks(),
        headers={**api.admin, "content-type": "application/json"},
    )
    assert r.status_code == 413


async def test_routing_errors_use_the_error_body(api: Api) -> None:
    r = await api.client.get("/api/v1/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    r = await api.client.delete(f"{P}/config/jira", headers=api.admin)
    assert r.status_code == 405 and r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def _token(api: Api, alg: str = "HS256", secret: str | None = None, **claims: object) -> str:
    base = {
        "userId": "u",
        "orgId": "org-a",
        "email": "a@b.c",
        "isAdmin": True,
        "exp": int(time.time()) + 60,
    }
    base.update(claims)
    return jwt.encode(base, secret or api.container.service_secrets.jwt_secret, algorithm=alg)


@pytest.mark.parametrize("kind", ["none", "HS512", "expired", "wrong-secret", "no-org", "garbage", "basic"])
async def test_bad_tokens_are_401(api: Api, kind: str) -> None:
    if kind == "none":
        header = "Bearer " + jwt.encode(
            {"userId": "u", "orgId": "o", "exp": int(time.time()) + 60}, "", algorithm="none"
        )
    elif kind == "HS512":
        header = "Bearer " + _token(api, alg="HS512")
    elif kind == "expired":
        header = "Bearer " + _token(api, exp=int(time.time()) - 5)
    elif kind == "wrong-secret":
        header = "Bearer " + _token(api, secret="x" * 40)
    elif kind == "no-org":
        header = "Bearer " + _token(api, orgId="")
    elif kind == "garbage":
        header = "Bearer not.a.jwt"
    else:
        header = "Basic dXNlcjpwYXNz"
    r = await api.client.get(f"{P}/", headers={"Authorization": header})
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.text(min_size=1, max_size=40).filter(lambda s: "/" not in s and "?" not in s and "#" not in s),
    body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=30),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=10,
    ),
)
async def test_no_input_makes_a_500(api: Api, name: str, body: object) -> None:
    name = quote(name, safe="")
    for method, path in (
        ("PUT", f"{P}/config/{name}"),
        ("POST", f"{P}/filters/{name}"),
        ("PUT", f"{P}/config/confluence"),
        ("POST", f"{P}/filters/jira"),
    ):
        r = await api.client.request(method, path, json=body, headers=api.admin)
        assert r.status_code < 500, (method, path, r.text)
        assert "Traceback" not in r.text


@pytest.mark.parametrize(
    "raw",
    [
        b'{"baseUrl": "https://x.example", "filters": {"x": NaN}}',
        b'{"baseUrl": "https://x.example", "filters": {"x": 1e400}}',
        b'{"baseUrl": "https://x.example", "filters": {"x": Infinity}}',
        b'{"baseUrl": "\\ud800"}',
        b'{"baseUrl": "https://x.example", "filters": {"n": ' + b"9" * 5000 + b"}}",
        b'{"baseUrl": "https://x.example", "filters": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}",
        b'{"baseUrl": "https://x.example", "filters": ' + b"[" * 2000 + b"]" * 2000 + b"}",
    ],
    ids=["nan", "overflow", "infinity", "lone-surrogate", "huge-int", "deep-object", "very-deep-array"],
)
async def test_json_that_cannot_round_trip_is_refused_and_nothing_is_stored(api: Api, raw: bytes) -> None:
    r = await api.client.put(f"{P}/config/jira", content=raw, headers={**api.admin, "content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "VALIDATION_ERROR"
    got = await api.client.get(f"{P}/config/jira", headers=api.admin)
    assert got.status_code == 200 and got.json()["version"] == 0


@pytest.mark.parametrize("base_url", ["javascript:alert(1)", "dup", "ftp://files.example", "https://"])
async def test_base_url_must_be_a_web_url(api: Api, base_url: str) -> None:
    r = await api.client.put(f"{P}/config/jira", json={"baseUrl": base_url}, headers=api.admin)
    assert r.status_code == 400
    assert r.json()["error"]["metadata"]["errors"][0]["path"] == "baseUrl"
