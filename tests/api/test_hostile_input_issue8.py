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
