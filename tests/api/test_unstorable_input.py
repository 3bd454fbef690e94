"""Input that a store cannot keep (issue 8): on MongoDB a field name with NUL or an integer beyond
64 bits reached the driver and answered 500, and the secret written ahead of the configuration
stayed. Refused at parse (400 naming the field) on every route and backend; should such data
reach the store anyway, it is a ValidationError and the secret written ahead is undone."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connector_core.errors import ValidationError
from connector_core.services.connectors import ConfigUpdate
from connector_core.services.context import read_secrets
from tests.api.conftest import CONFLUENCE_API_TOKEN, Api

P = "/api/v1/connectors"
JSON = {"content-type": "application/json"}
BASE = "https://acme.atlassian.net"

BAD_BODIES = [
    (b'{"baseUrl": "%s", "filters": {"a\\u0000b": 1}}', "filters", "NUL"),
    (b'{"baseUrl": "%s", "filters": {"x": {"a\\u0000": 1}}}', "filters.x", "NUL"),
    (b'{"baseUrl": "%s", "filters": {"x": 9223372036854775808}}', "filters.x", "64 bits"),
    (b'{"baseUrl": "%s", "filters": {"x": [1, -9223372036854775809]}}', "filters.x.1", "64 bits"),
    (b'{"baseUrl": "%s", "filters": {"x": 99999999999999999999999}}', "filters.x", "64 bits"),
]


@pytest.mark.parametrize(("raw", "path", "says"), BAD_BODIES, ids=["nul", "nested-nul", "2**63", "-2**63-1", "huge"])
async def test_unstorable_config_is_a_400_naming_the_field_on_every_backend(
    stored_api: Api, raw: bytes, path: str, says: str
) -> None:
    api = stored_api
    r = await api.client.put(f"{P}/config/jira", content=raw % BASE.encode(), headers={**api.admin, **JSON})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["metadata"]["errors"][0]["path"] == path
    assert says in error["metadata"]["errors"][0]["message"]
    assert (await api.client.get(f"{P}/config/jira", headers=api.admin)).json()["version"] == 0


async def test_dollar_and_dot_field_names_are_kept_or_refused_never_a_500(stored_api: Api) -> None:
    """MongoDB 5.0+ (and SQLite, memory) keep them; an older server's refusal is a 400."""
    api = stored_api
    filters = {"$where": 1, ".x": {"a.b": 2, "$in": [1]}}
    r = await api.client.put(f"{P}/config/jira", json={"baseUrl": BASE, "filters": filters}, headers=api.admin)
    assert r.status_code in (200, 400), r.text
    got = (await api.client.get(f"{P}/config/jira", headers=api.admin)).json()
    assert got["config"]["filters"] == (filters if r.status_code == 200 else {})


async def test_an_integer_within_64_bits_is_kept(stored_api: Api) -> None:
    api = stored_api
    body = {"baseUrl": BASE, "filters": {"max": 2**63 - 1, "min": -(2**63)}}
    r = await api.client.put(f"{P}/config/jira", json=body, headers=api.admin)
    assert r.status_code == 200, r.text
    got = await api.client.get(f"{P}/config/jira", headers=api.admin)
    assert got.json()["config"]["filters"] == body["filters"]


@pytest.mark.parametrize(
    "raw",
    [b'{"filterOptions": {"projects": ["a"], "$x": 1}}', b'{"filterOptions": {"projects": [9223372036854775808]}}'],
    ids=["dollar", "2**63"],
)
async def test_unstorable_filter_selection_is_a_400(api: Api, raw: bytes) -> None:
    r = await api.client.post(f"{P}/filters/jira", content=raw, headers={**api.admin, **JSON})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "VALIDATION_ERROR"


@pytest.mark.mongo
@pytest.mark.parametrize("stored_api", ["mongo"], indirect=True)
@pytest.mark.parametrize("filters", [{"a\x00b": 1}, {"x": 2**63}], ids=["nul", "2**63"])
async def test_on_mongodb_unstorable_data_is_a_400_and_the_secret_written_ahead_is_undone(
    stored_api: Api, filters: dict[str, Any]
) -> None:
    """Past the API's parse (a caller embedding the service, an import): the store refuses it
    before anything is written, so the secret written ahead of the commit is rolled back."""
    api = stored_api
    r = await api.client.put(f"{P}/config/confluence", json=CONFLUENCE_API_TOKEN, headers=api.admin)
    assert r.status_code == 200, r.text
    service = api.container.connectors
    auth = {"authType": "API_TOKEN", "email": "ops@acme.example", "apiToken": "PLANTED-NEW-TOKEN"}
    update = ConfigUpdate(base_url=BASE, auth=auth, sync={}, filters=filters)
    with pytest.raises(ValidationError) as refused:
        await service.update_configuration("org-a", "user-1", "confluence", update)
    assert "PLANTED" not in str(refused.value) and "a\x00b" not in str(refused.value)
    secrets = await read_secrets(api.container.ctx.secrets, "confluence", "org-a")
    assert secrets == {"auth.apiToken": "PLANTED-API-TOKEN"}
    got = (await api.client.get(f"{P}/config/confluence", headers=api.admin)).json()
    assert got["version"] == 1 and got["config"]["filters"] == {}
    # and through the API the same data is refused at parse with a 400 naming the field
    raw = json.dumps({**CONFLUENCE_API_TOKEN, "filters": filters}).encode()
    r = await api.client.put(f"{P}/config/confluence", content=raw, headers={**api.admin, **JSON})
    assert r.status_code == 400, r.text
