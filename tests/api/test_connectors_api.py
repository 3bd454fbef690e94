"""Connector routes end to end: lists, config (secrets write-only), schema, toggle, filters."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from entrypoints.bootstrap import Container
from tests.api.conftest import CONFLUENCE_API_TOKEN, Api

P = "/api/v1/connectors"


async def events(api: Api) -> list[dict[str, Any]]:
    r = await api.client.get(f"{P}/internal/events", headers=api.scoped)
    assert r.status_code == 200
    found: list[dict[str, Any]] = r.json()["events"]
    return found


async def test_list_has_every_catalog_connector(api: Api) -> None:
    r = await api.client.get(f"{P}/", headers=api.admin)
    assert r.status_code == 200
    keys = [c["key"] for c in r.json()]
    assert {
        "googleWorkspace",
        "onedrive",
        "sharepointOnline",
        "confluence",
        "jira",
        "slack",
    } <= set(keys)
    assert all(c["isEnabled"] is False for c in r.json())


async def test_names_match_case_insensitively_and_unknown_lists_names(api: Api) -> None:
    for name in ("CONFLUENCE", "Confluence", "atlassian-confluence"):
        r = await api.client.get(f"{P}/config/{name}", headers=api.admin)
        assert r.status_code == 200 and r.json()["key"] == "confluence"
    r = await api.client.get(f"{P}/config/notAThing", headers=api.admin)
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["code"] == "CONNECTOR_NOT_FOUND"
    assert "googleWorkspace" in err["metadata"]["knownConnectors"]


async def test_config_secrets_are_write_only(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    r = await api.client.put(f"{P}/config/confluence", json=CONFLUENCE_API_TOKEN, headers=api.admin)
    assert r.status_code == 200, r.text
    assert "PLANTED-API-TOKEN" not in r.text
    got = await api.client.get(f"{P}/config/confluence", headers=api.admin)
    body = got.json()
    assert body["config"]["auth"]["hasApiToken"] is True
    assert "apiToken" not in body["config"]["auth"]
    assert body["config"]["auth"]["email"] == "ops@acme.example"
    assert "PLANTED-API-TOKEN" not in got.text
    # omitting the secret keeps the stored one
    update = {
        "baseUrl": "https://acme2.atlassian.net",
        "auth": {"authType": "API_TOKEN", "email": "ops@acme.example"},
    }
    r = await api.client.put(f"{P}/config/confluence", json=update, headers=api.admin)
    assert r.status_code == 200
    assert r.json()["config"]["config"]["auth"]["hasApiToken"] is True
    stored = await api.container.secrets_store.get("/services/connectors/confluence/config/org-a")
    assert stored is not None and "PLANTED-API-TOKEN" in stored.value
    # the raw store underneath holds ciphertext only
    raw = await api.container.infrastructure.secrets.get("/services/connectors/confluence/config/org-a")
    assert raw is not None and "PLANTED-API-TOKEN" not in raw.value
    assert "PLANTED-API-TOKEN" not in caplog.text
    assert all("PLANTED-API-TOKEN" not in str(e) for e in await events(api))


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        ({}, ["baseUrl"]),
        ({"baseUrl": 3}, ["baseUrl"]),
        ({"baseUrl": "https://x.example", "auth": {"authType": "NOPE"}}, ["auth.authType"]),
        ({"baseUrl": "https://x.example", "auth": {"email": "not-an-email"}}, ["auth.email"]),
        ({"baseUrl": "https://x.example", "surprise": 1}, ["surprise"]),
        ({"baseUrl": "https://x.example", "auth": {"apiToken": ""}}, ["auth.apiToken"]),
        (
            {"baseUrl": "https://x.example", "sync": {"intervalMinutes": 1}},
            ["sync.intervalMinutes"],
        ),
    ],
)
async def test_config_validation_names_each_field(api: Api, body: dict[str, Any], paths: list[str]) -> None:
    r = await api.client.put(f"{P}/config/confluence", json=body, headers=api.admin)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "VALIDATION_ERROR"
    assert [e["path"] for e in err["metadata"]["errors"]] == paths
    cfg = await api.client.get(f"{P}/config/confluence", headers=api.admin)
    assert cfg.json()["version"] == 0  # nothing stored


async def test_secret_value_is_not_echoed_in_validation_errors(api: Api) -> None:
    body = {"baseUrl": "https://x.example", "auth": {"apiToken": "P" * 2000}}
    r = await api.client.put(f"{P}/config/confluence", json=body, headers=api.admin)
    assert r.status_code == 400 and "PPPP" not in r.text


async def test_schema_route(api: Api) -> None:
    r = await api.client.get(f"{P}/schema/googleWorkspace", headers=api.admin)
    assert r.status_code == 200
    schema = r.json()["schema"]
    assert schema["required"] == ["baseUrl"]
    assert schema["properties"]["auth"]["properties"]["clientSecret"]["writeOnly"] is True


async def test_toggle_unconfigured_says_what_is_missing(api: Api) -> None:
    r = await api.client.post(f"{P}/toggle/jira", headers=api.admin)
    assert r.status_code == 409
    err = r.json()["error"]
    assert err["code"] == "CONNECTOR_NOT_CONFIGURED"
    assert "auth.clientId" in err["message"] and "auth.clientSecret" in err["message"]
    assert err["metadata"]["missing"][:2] == ["auth.clientId", "auth.clientSecret"]
    assert await events(api) == []


async def test_toggle_flips_and_emits_events(api: Api) -> None:
    await api.client.put(f"{P}/config/confluence", json=CONFLUENCE_API_TOKEN, headers=api.admin)
    r = await api.client.post(f"{P}/toggle/confluence", headers=api.admin)
    assert r.status_code == 200 and r.json()["connector"]["isEnabled"] is True
    active = await api.client.get(f"{P}/active", headers=api.user)
    assert [c["key"] for c in active.json()] == ["confluence"]
    inactive = await api.client.get(f"{P}/inactive", headers=api.user)
    assert "confluence" not in [c["key"] for c in inactive.json()]
    r = await api.client.post(f"{P}/toggle/confluence", headers=api.admin)
    assert r.json()["connector"]["isEnabled"] is False
    toggles = [e for e in await events(api) if e["eventType"] in ("appEnabled", "appDisabled")]
    assert [e["eventType"] for e in toggles] == ["appEnabled", "appDisabled"]
    enabled = toggles[0]["payload"]
    assert enabled["orgId"] == "org-a" and enabled["apps"] == ["CONFLUENCE"]
    assert enabled["appGroup"] == "Atlassian" and enabled["syncAction"] == "immediate"
    assert enabled["appGroupId"] == r.json()["connector"]["id"]
    assert toggles[1]["payload"]["apps"] == ["CONFLUENCE"]
    assert isinstance(toggles[0]["timestamp"], int)


async def test_filters_round_trip_and_validation(api: Api) -> None:
    r = await api.client.get(f"{P}/filters/confluence", headers=api.admin)
    assert r.status_code == 200
    assert r.json()["filterOptions"] == {}
    assert {f["key"] for f in r.json()["available"]} == {"spaces", "contentTypes", "modifiedAfter"}
    sel = {"spaces": ["ENG"], "contentTypes": ["page"], "modifiedAfter": "2024-01-31"}
    r = await api.client.post(f"{P}/filters/confluence", json={"filterOptions": sel}, headers=api.admin)
    assert r.status_code == 200 and r.json()["filterOptions"] == sel
    bad = {"contentTypes": ["page", "video"], "nope": 1, "modifiedAfter": "yesterday"}
    r = await api.client.post(f"{P}/filters/confluence", json={"filterOptions": bad}, headers=api.admin)
    assert r.status_code == 400
    paths = sorted(e["path"] for e in r.json()["error"]["metadata"]["errors"])
    assert paths == [
        "filterOptions.contentTypes",
        "filterOptions.modifiedAfter",
        "filterOptions.nope",
    ]
    r = await api.client.get(f"{P}/filters/confluence", headers=api.admin)
    assert r.json()["filterOptions"] == sel  # the bad request lost nothing
    r = await api.client.post(f"{P}/filters/confluence", json={}, headers=api.admin)
    assert r.status_code == 400
    assert r.json()["error"]["metadata"]["errors"][0]["path"] == "filterOptions"


async def test_update_app_config_reply_has_no_secret(api: Api) -> None:
    r = await api.client.post(f"{P}/updateAppConfig", json={}, headers=api.scoped)
    assert r.status_code == 200
    text = r.text
    secrets = api.container.service_secrets
    assert secrets.jwt_secret not in text and secrets.scoped_jwt_secret not in text
    assert "googleWorkspace" in r.json()["connectors"]


async def test_reload_swaps_without_dropping_requests_in_flight(tmp_path: Path) -> None:
    import asyncio

    import httpx

    from entrypoints.bootstrap import build_container
    from entrypoints.http.app import create_app
    from entrypoints.settings import load_settings

    settings_file = tmp_path / "cm.toml"
    settings_file.write_text('storage = "memory"\nsecrets = "memory"\n', encoding="utf-8")
    env = {"CM_MASTER_KEY": "reload-test-key"}
    settings = load_settings(settings_file, env=env, data_dir=tmp_path)
    container = await build_container(settings, env=env)
    reloads = 0

    async def reloader(old: Container) -> Container:
        nonlocal reloads
        reloads += 1
        await asyncio.sleep(0.05)  # a slow rebuild: requests keep flowing meanwhile
        new_settings = load_settings(settings_file, env=env, data_dir=tmp_path)
        return await build_container(new_settings, env=env, infrastructure=old.infrastructure, iam=old.iam)

    app = create_app(container, reloader=reloader)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        api = Api(client, container)
        await client.put(f"{P}/config/confluence", json=CONFLUENCE_API_TOKEN, headers=api.admin)
        settings_file.write_text(
            'storage = "memory"\nsecrets = "memory"\n'
            '[[providers]]\nkey = "acmeIdp"\ndisplayName = "Acme IdP"\n'
            'oauth = { authorizeUrl = "https://idp.acme.example/authorize",'
            ' tokenUrl = "https://idp.acme.example/token" }\n',
            encoding="utf-8",
        )
        reads = [client.get(f"{P}/config/confluence", headers=api.admin) for _ in range(40)]
        reload = client.post(f"{P}/updateAppConfig", json={}, headers=api.scoped)
        results = await asyncio.gather(*reads[:20], reload, *reads[20:])
        assert all(r.status_code == 200 for r in results), [r.text for r in results if r.status_code != 200]
        assert reloads == 1
        body = results[20].json()
        assert body["generation"] == 2 and "acmeIdp" in body["connectors"]
        # the new configuration is live, the data is still there
        r = await client.get(f"{P}/schema/acmeIdp", headers=api.admin)
        assert r.status_code == 200
        r = await client.get(f"{P}/config/confluence", headers=api.admin)
        assert r.json()["config"]["auth"]["hasApiToken"] is True


async def test_background_loops_follow_a_reload_and_stop_gracefully(tmp_path: Path) -> None:
    import asyncio

    from entrypoints.bootstrap import build_container
    from entrypoints.http.app import create_app
    from entrypoints.settings import load_settings

    env = {"CM_MASTER_KEY": "loops-test-key"}
    settings = load_settings(env=env, storage="memory", secrets="memory", data_dir=tmp_path)
    first = await build_container(settings, env=env)
    seen: list[int] = []
    finished: list[int] = []

    async def loop(container: Container, stop: asyncio.Event) -> None:
        seen.append(container.generation)
        await stop.wait()
        await asyncio.sleep(0.05)  # a pass finishing its work after the stop signal
        finished.append(container.generation)

    async def reloader(old: Container) -> Container:
        return await build_container(settings, env=env, infrastructure=old.infrastructure, iam=old.iam)

    app = create_app(first, reloader=reloader, lifespan_tasks=[loop], close_on_shutdown=True)
    holder = app.state.holder
    async with app.router.lifespan_context(app):
        await asyncio.sleep(0)
        assert seen == [1]
        generation, _ = await holder.reload()
        assert generation == 2
        for _ in range(100):
            if seen == [1, 2]:
                break
            await asyncio.sleep(0.01)
        assert seen == [1, 2] and finished == [1]  # generation 1's loop finished, not killed
    assert finished == [1, 2]


#: Microsoft tenant ids as Entra ID names them: a GUID, a verified domain, or a well-known name
VALID_TENANTS = ["8eaef023-2b34-4da1-9baa-8bc8c9d6a490", "common", "organizations", "contoso.onmicrosoft.com"]


@pytest.mark.parametrize("key", ["onedrive", "sharepointOnline"])
@pytest.mark.parametrize("tenant", ["..", "a..b", ".a", "a.", "-a", "contoso\n", "a" * 129])
async def test_a_tenant_id_the_authorize_url_would_refuse_is_refused_when_saved(
    api: Api, key: str, tenant: str
) -> None:
    # the schema accepted "..", "a..b", ".a" (and a trailing newline): the configuration was
    # saved, and the admin only learnt at authorize time that it could not be used
    auth = {
        "clientId": "cid",
        "clientSecret": "s3cret",
        "tenantId": tenant,
        "sharepointDomain": "contoso.sharepoint.com",
    }
    if key == "onedrive":
        del auth["sharepointDomain"]
    r = await api.client.put(
        f"{P}/config/{key}", json={"baseUrl": "https://app.example.com", "auth": auth}, headers=api.admin
    )
    assert r.status_code == 400, r.text
    assert [e["path"] for e in r.json()["error"]["metadata"]["errors"]] == ["auth.tenantId"]


@pytest.mark.parametrize(
    ("domain", "saved"),
    [
        ("contoso.sharepoint.com", True),
        ("contoso-my.sharepoint.com", True),
        ("..", False),
        ("-", False),
        ("a.", False),
        ("a..b", False),
        (".contoso.sharepoint.com", False),
        ("contoso.sharepoint.com\n", False),  # ``$`` matched before a final newline
        ("a" * 254, False),
    ],
)
async def test_a_sharepoint_domain_is_a_host_name(api: Api, domain: str, saved: bool) -> None:
    auth = {"clientId": "cid", "clientSecret": "s3cret", "tenantId": "contoso", "sharepointDomain": domain}
    r = await api.client.put(
        f"{P}/config/sharepointOnline", json={"baseUrl": "https://app.example.com", "auth": auth}, headers=api.admin
    )
    if saved:
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 400, r.text
        assert [e["path"] for e in r.json()["error"]["metadata"]["errors"]] == ["auth.sharepointDomain"]


@pytest.mark.parametrize("tenant", VALID_TENANTS)
async def test_a_valid_tenant_id_is_saved_and_can_be_authorized(api: Api, tenant: str) -> None:
    auth = {"clientId": "cid", "clientSecret": "s3cret", "tenantId": tenant}
    r = await api.client.put(
        f"{P}/config/onedrive", json={"baseUrl": "https://app.example.com", "auth": auth}, headers=api.admin
    )
    assert r.status_code == 200, r.text
    r = await api.client.get(
        f"{P}/onedrive/oauth/authorize", params={"baseUrl": "http://localhost:3000"}, headers=api.admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["authorizationUrl"].startswith(f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize?")
