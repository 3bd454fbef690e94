"""A connector keeps and hands out only the secrets of its current auth type, and a stored secret
can be removed on purpose (``null`` in PUT /config)."""

from __future__ import annotations

import json
from typing import Any

from connector_core.services.context import read_secrets, secret_path
from tests.api.conftest import Api

P = "/api/v1/connectors"
SITE = "https://acme.atlassian.net"
JIRA_OAUTH = {"baseUrl": SITE, "auth": {"authType": "OAUTH", "clientId": "cid", "clientSecret": "PLANTED-OLD-SECRET"}}
JIRA_API_TOKEN = {
    "baseUrl": SITE,
    "auth": {"authType": "API_TOKEN", "email": "ops@acme.example", "apiToken": "PLANTED-API-TOKEN"},
}


async def put(api: Api, name: str, body: dict[str, Any]) -> Any:
    return await api.client.put(f"{P}/config/{name}", json=body, headers=api.admin)


async def enable(api: Api, name: str) -> None:
    r = await api.client.post(f"{P}/toggle/{name}", json={"enabled": True}, headers=api.admin)
    assert r.status_code == 200, r.text


async def stored(api: Api, name: str) -> dict[str, str]:
    return await read_secrets(api.container.ctx.secrets, name, "org-a")


async def test_changing_the_auth_type_drops_the_other_types_secrets_and_the_route_hands_out_only_its_own(
    api: Api,
) -> None:
    assert (await put(api, "jira", JIRA_OAUTH)).status_code == 200
    assert await stored(api, "jira") == {"auth.clientSecret": "PLANTED-OLD-SECRET"}
    r = await put(api, "jira", JIRA_API_TOKEN)
    assert r.status_code == 200, r.text
    auth = r.json()["config"]["config"]["auth"]
    assert auth["hasApiToken"] is True and auth["hasClientSecret"] is False
    assert await stored(api, "jira") == {"auth.apiToken": "PLANTED-API-TOKEN"}  # dropped in the same save
    await enable(api, "jira")

    r = await api.client.get(f"{P}/internal/credentials/jira", headers=api.auth(api.scoped_token(org="org-a")))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "authType": "API_TOKEN",
        "baseUrl": SITE,
        "email": "ops@acme.example",
        "apiToken": "PLANTED-API-TOKEN",
    }
    assert "PLANTED-OLD-SECRET" not in r.text


async def test_the_route_never_hands_out_another_auth_types_secret_stored_before(api: Api) -> None:
    """Deployments saved before secrets were dropped on an auth type change still hold them."""
    assert (await put(api, "jira", JIRA_API_TOKEN)).status_code == 200
    await enable(api, "jira")
    path = secret_path("jira", "org-a")
    found = await api.container.ctx.secrets.get(path)
    assert found is not None
    old = {"auth.apiToken": "PLANTED-API-TOKEN", "auth.clientSecret": "PLANTED-OLD-SECRET"}
    await api.container.ctx.secrets.put(path, json.dumps(old), expected_revision=found.revision)

    r = await api.client.get(f"{P}/internal/credentials/jira", headers=api.auth(api.scoped_token(org="org-a")))
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"authType", "baseUrl", "email", "apiToken"}
    assert "PLANTED-OLD-SECRET" not in r.text


async def test_null_removes_a_stored_secret(api: Api) -> None:
    assert (await put(api, "jira", JIRA_OAUTH)).status_code == 200
    r = await put(
        api, "jira", {"baseUrl": SITE, "auth": {"authType": "OAUTH", "clientId": "cid", "clientSecret": None}}
    )
    assert r.status_code == 200, r.text
    body = r.json()["config"]
    assert body["config"]["auth"]["hasClientSecret"] is False and body["missing"] == ["auth.clientSecret"]
    assert "clientSecret" not in body["config"]["auth"]
    assert await stored(api, "jira") == {}
    # left out still means "keep": configured again, then a PUT without the field keeps it
    assert (await put(api, "jira", JIRA_OAUTH)).status_code == 200
    r = await put(api, "jira", {"baseUrl": SITE, "auth": {"authType": "OAUTH", "clientId": "cid"}})
    assert r.json()["config"]["config"]["auth"]["hasClientSecret"] is True
    assert await stored(api, "jira") == {"auth.clientSecret": "PLANTED-OLD-SECRET"}


async def test_removing_a_secret_an_enabled_connector_needs_is_refused_and_loses_nothing(api: Api) -> None:
    assert (await put(api, "jira", JIRA_API_TOKEN)).status_code == 200
    await enable(api, "jira")
    gone = {"baseUrl": SITE, "auth": {"authType": "API_TOKEN", "email": "ops@acme.example", "apiToken": None}}
    r = await put(api, "jira", gone)
    assert r.status_code == 409, r.text
    assert "auth.apiToken" in r.text and "PLANTED" not in r.text
    assert await stored(api, "jira") == {"auth.apiToken": "PLANTED-API-TOKEN"}


async def test_null_is_only_for_secrets(api: Api) -> None:
    r = await put(api, "jira", {"baseUrl": SITE, "auth": {"authType": "OAUTH", "clientId": None}})
    assert r.status_code == 400
    assert r.json()["error"]["metadata"]["errors"][0]["path"] == "auth.clientId"


async def test_the_openapi_document_and_the_schema_say_null_removes_a_secret(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    op = doc["paths"][f"{P}/config/jira"]["put"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    secret = schema["properties"]["auth"]["properties"]["clientSecret"]
    assert "null" in secret["type"] and "null" in secret["description"].lower()
    assert "null" in schema["description"]
    assert schema["properties"]["auth"]["properties"]["clientId"]["type"] == "string"
    served = (await api.client.get(f"{P}/schema/jira", headers=api.admin)).json()["schema"]
    assert "null" in served["properties"]["auth"]["properties"]["apiToken"]["type"]
