"""Hostile or malformed input found by the fuzzing/attack run (issue 8): each is refused with a
clear 4xx and nothing is stored."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

P = "/api/v1/connectors"
JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        ("PUT", "config/jira", b'{"baseUrl": "https://x.example", "filters": {"x": "\\ud800"}}'),
        ("PUT", "config/jira", b'{"baseUrl": "https://x.example", "filters": {"\\udfff": 1}}'),
        ("PUT", "config/jira", b'{"baseUrl": "https://x.example", "filters": {"a": ["ok", "\\ud83d"]}}'),
        (
            "PUT",
            "config/confluence",
            b'{"baseUrl": "https://x.example", "auth": {"authType": "API_TOKEN", "email": "a@b.example",'
            b' "apiToken": "tok\\ud800en"}}',
        ),
        ("POST", "filters/jira", b'{"filterOptions": {"projects": ["\\ud800"]}}'),
        ("POST", "filters/jira", b'{"filterOptions": {"\\ud800": ["x"]}}'),
    ],
    ids=["config-value", "config-key", "config-list", "secret", "filter-value", "filter-key"],
)
async def test_lone_surrogates_are_refused_and_never_stored(api: Api, method: str, path: str, raw: bytes) -> None:
    r = await api.client.request(method, f"{P}/{path}", content=raw, headers={**api.admin, **JSON})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "VALIDATION_ERROR"
    name = path.split("/")[1]
    got = await api.client.get(f"{P}/config/{name}", headers=api.admin)
    assert got.status_code == 200 and got.json()["version"] == 0
    filters = await api.client.get(f"{P}/filters/{name}", headers=api.admin)
    assert filters.status_code == 200 and filters.json()["filterOptions"] == {}


async def test_an_unknown_key_with_a_lone_surrogate_gets_a_readable_400(api: Api) -> None:
    raw = b'{"baseUrl": "https://x.example", "\\ud800": 1}'
    r = await api.client.put(f"{P}/config/jira", content=raw, headers={**api.admin, **JSON})
    assert r.status_code == 400
    body = r.json()
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert body["error"]["metadata"]["errors"]


def _scoped_with(api: Api, **claims: object) -> dict[str, str]:
    import time

    import jwt

    body: dict[str, object] = {"scopes": ["fetch:config"], "exp": int(time.time()) + 60, **claims}
    return api.auth(jwt.encode(body, api.container.service_secrets.scoped_jwt_secret, algorithm="HS256"))


@pytest.mark.parametrize("org", [7, ["org-a"], {"id": "org-a"}, "", None, True], ids=repr)
async def test_a_scoped_token_with_a_malformed_org_claim_is_refused(api: Api, org: object) -> None:
    """Present but not a non-empty string: fail closed, never read it as 'unbound'."""
    headers = _scoped_with(api, orgId=org)
    calls: list[tuple[str, str, dict[str, str], dict[str, str] | None]] = [
        ("GET", f"{P}/internal/events", {}, None),
        ("GET", f"{P}/internal/credentials/jira", {"orgId": "org-a"}, None),
        ("POST", f"{P}/internal/refreshIndividualConnectorToken", {}, {"orgId": "org-a", "connector": "jira"}),
    ]
    for method, path, params, body in calls:
        r = await api.client.request(method, path, headers=headers, params=params, json=body)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["error"]["code"] == "UNAUTHORIZED"
    # without the claim the token is unbound, as before
    r = await api.client.get(f"{P}/internal/events", headers=_scoped_with(api))
    assert r.status_code == 200


@pytest.mark.parametrize(
    "base_url",
    [
        "https://acme.example/\x00",
        "https://acme\x00.example",
        "https://acme.example/a\x1bb",
        "https://acme.example/\x7f",
        "https://acme.example/\x85",
        "https://acme.example\\@evil.example",
        "https://acme.example:99999",
    ],
    ids=["nul-path", "nul-host", "escape", "del", "c1-nel", "backslash", "bad-port"],
)
async def test_a_uri_with_control_characters_is_refused(api: Api, base_url: str) -> None:
    for name in ("jira", "confluence", "onedrive"):
        r = await api.client.put(f"{P}/config/{name}", json={"baseUrl": base_url}, headers=api.admin)
        assert r.status_code == 400, (name, r.text)
        assert r.json()["error"]["metadata"]["errors"][0]["path"] == "baseUrl"
        got = await api.client.get(f"{P}/config/{name}", headers=api.admin)
        assert got.json()["version"] == 0


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        (f"{P}/config/jira", {"GET", "HEAD", "PUT"}),
        (f"{P}/filters/jira", {"GET", "HEAD", "POST"}),
        (f"{P}/toggle/jira", {"POST"}),
        ("/api/v1/health", {"GET", "HEAD"}),
    ],
)
@pytest.mark.parametrize("method", ["OPTIONS", "DELETE", "PATCH"])
async def test_405_lists_every_allowed_method(api: Api, path: str, allowed: set[str], method: str) -> None:
    r = await api.client.request(method, path, headers=api.admin)
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert {m.strip() for m in r.headers["allow"].split(",")} == allowed


async def test_each_method_of_a_shared_path_reaches_its_own_handler(api: Api) -> None:
    r = await api.client.put(f"{P}/config/jira", json={"baseUrl": "https://acme.example"}, headers=api.admin)
    assert r.status_code == 200 and r.json()["message"] == "Configuration saved"
    r = await api.client.get(f"{P}/config/jira", headers=api.admin)
    assert r.status_code == 200 and r.json()["config"]["baseUrl"] == "https://acme.example"
    r = await api.client.head(f"{P}/config/jira", headers=api.admin)
    assert r.status_code == 200 and r.content == b""
    r = await api.client.post(f"{P}/filters/jira", json={"filterOptions": {}}, headers=api.admin)
    assert r.status_code == 200 and r.json()["key"] == "jira"


@pytest.mark.parametrize(("method", "path"), [("PUT", "config/jira"), ("POST", "filters/jira")])
async def test_a_body_with_many_unknown_keys_gets_a_short_error(api: Api, method: str, path: str) -> None:
    unknown = ",".join(f'"k{i:05d}":0' for i in range(90_000))
    if path.startswith("config"):
        raw = ('{"baseUrl": "https://acme.example", ' + unknown + "}").encode()
    else:
        raw = ('{"filterOptions": {' + unknown + "}}").encode()
    assert len(raw) < 1024 * 1024
    r = await api.client.request(method, f"{P}/{path}", content=raw, headers={**api.admin, **JSON})
    assert r.status_code == 400
    assert len(r.content) < 10_000, len(r.content)
    meta = r.json()["error"]["metadata"]
    assert len(meta["errors"]) == 20 and meta["errors"][0]["path"].endswith("k00000")
    assert meta["errorCount"] == 90_000


async def test_an_endless_field_name_is_not_echoed_in_full(api: Api) -> None:
    name = "k" * 500_000
    raw = ('{"baseUrl": "https://acme.example", "' + name + '": 1}').encode()
    r = await api.client.put(f"{P}/config/jira", content=raw, headers={**api.admin, **JSON})
    assert r.status_code == 400
    assert len(r.content) < 2_000, len(r.content)
    assert r.json()["error"]["metadata"]["errors"][0]["path"].startswith("kkkk")


async def test_only_an_unbound_service_token_may_reload_the_configuration(api: Api) -> None:
    """A reload re-reads every org's configuration: a token bound to one org may not start it."""
    bound = api.auth(api.scoped_token(org="org-a"))
    r = await api.client.post(f"{P}/updateAppConfig", json={}, headers=bound)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "FORBIDDEN"
    r = await api.client.post(f"{P}/updateAppConfig", json={}, headers=api.scoped)
    assert r.status_code == 200 and r.json()["message"] == "Application configuration reloaded"
