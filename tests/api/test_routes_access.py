"""Every route x {no token, user, admin, other org, scoped}."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.routing import Route

from entrypoints.http.auth import Access
from entrypoints.http.explorer import OPERATOR_PAGES
from entrypoints.http.routes import ENDPOINTS
from tests.api.conftest import CONFLUENCE_API_TOKEN, Api

SAMPLE_BODY: dict[str, Any] = {
    "PUT /api/v1/connectors/config/{name}": CONFLUENCE_API_TOKEN,
    "POST /api/v1/connectors/filters/{name}": {"filterOptions": {"spaces": ["ENG"]}},
    "POST /api/v1/connectors/getTokenFromCode": {"tempCode": "abc"},
    "POST /api/v1/connectors/internal/refreshIndividualConnectorToken": {
        "connector": "confluence",
        "orgId": "org-a",
    },
    "POST /api/v1/connectors/updateAppConfig": {},
}
SAMPLE_QUERY = {"baseUrl": "http://localhost:3000", "orgId": "org-a"}


def _request(e: Any) -> tuple[str, str, dict[str, Any]]:
    path = e.path.replace("{name}", "confluence")
    kwargs: dict[str, Any] = {}
    body = SAMPLE_BODY.get(f"{e.method} {e.path}")
    if e.body is not None:
        kwargs["json"] = body if body is not None else {}
    if e.query is not None:
        kwargs["params"] = SAMPLE_QUERY
    return e.method, path, kwargs


CASES = [pytest.param(e, id=f"{e.method} {e.path}") for e in ENDPOINTS]


@pytest.mark.parametrize("endpoint", CASES)
async def test_without_token(api: Api, endpoint: Any) -> None:
    method, path, kwargs = _request(endpoint)
    r = await api.client.request(method, path, **kwargs)
    if endpoint.access is Access.PUBLIC:
        assert r.status_code == 200
    else:
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize("endpoint", CASES)
async def test_plain_user(api: Api, endpoint: Any) -> None:
    method, path, kwargs = _request(endpoint)
    r = await api.client.request(method, path, headers=api.user, **kwargs)
    expected = {
        Access.PUBLIC: {200},
        Access.USER: {200},
        Access.ADMIN: {403},
        Access.SCOPED: {401},
    }[endpoint.access]
    assert r.status_code in expected, r.text
    assert "error" in r.json() or r.status_code == 200


@pytest.mark.parametrize("endpoint", CASES)
async def test_admin(api: Api, endpoint: Any) -> None:
    method, path, kwargs = _request(endpoint)
    r = await api.client.request(method, path, headers=api.admin, **kwargs)
    if endpoint.access is Access.SCOPED:
        assert r.status_code == 401
    else:
        assert r.status_code not in {401, 403, 500}, r.text


@pytest.mark.parametrize("endpoint", CASES)
async def test_scoped(api: Api, endpoint: Any) -> None:
    method, path, kwargs = _request(endpoint)
    r = await api.client.request(method, path, headers=api.scoped, **kwargs)
    if endpoint.access is Access.SCOPED:
        assert r.status_code not in {401, 403, 500}, r.text
    elif endpoint.access is Access.PUBLIC:
        assert r.status_code == 200
    else:
        assert r.status_code == 401


async def test_scoped_token_without_fetch_config_is_forbidden(api: Api) -> None:
    token = api.scoped_token(scopes=["something:else"])
    r = await api.client.post("/api/v1/connectors/updateAppConfig", json={}, headers=api.auth(token))
    assert r.status_code == 403


@pytest.mark.parametrize("endpoint", [c for c, e in zip(CASES, ENDPOINTS, strict=True) if e.access is Access.ADMIN])
async def test_other_org_sees_nothing(api: Api, endpoint: Any) -> None:
    """Org A configures and enables Confluence; org B's admin gets only its own blank state."""
    r = await api.client.put("/api/v1/connectors/config/confluence", json=CONFLUENCE_API_TOKEN, headers=api.admin)
    assert r.status_code == 200
    await api.client.post(
        "/api/v1/connectors/filters/confluence",
        json={"filterOptions": {"spaces": ["SECRETSPACE"]}},
        headers=api.admin,
    )
    other = api.auth(api.user_token(org="org-b", user="intruder", admin=True))
    method, path, kwargs = _request(endpoint)
    if method == "GET":
        r = await api.client.request(method, path, headers=other, **kwargs)
        assert "acme.atlassian.net" not in r.text
        assert "SECRETSPACE" not in r.text
        assert "ops@acme.example" not in r.text
    r = await api.client.get("/api/v1/connectors/config/confluence", headers=api.admin)
    assert r.json()["config"]["baseUrl"] == "https://acme.atlassian.net"


async def test_every_mounted_route_is_in_openapi(api: Api) -> None:
    """The served document names every route once per connector (with that connector's
    schemas); mapped back to the route templates it is exactly what is mounted."""
    from entrypoints.http.app import create_app

    app = create_app(api.container)
    doc = (await api.client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    mounted = {
        (m, r.path)
        for r in app.routes
        if isinstance(r, Route)
        for m in r.methods or ()
        # operator pages (/, /docs, /metrics) and the web console's (/admin) are not API routes
        if m != "HEAD"
        and r.path != "/openapi.json"
        and r.path not in OPERATOR_PAGES
        and not r.path.startswith("/admin")
    }
    keys = set(api.container.catalog.keys)

    def template(path: str) -> str:
        return "/".join("{name}" if part in keys else part for part in path.split("/"))

    documented = {(m.upper(), template(p)) for p, ops in doc["paths"].items() for m in ops}
    assert mounted == documented
    per_connector = [p for p in doc["paths"] if template(p) != p]
    assert len(per_connector) == len(keys) * len({p for _, p in mounted if "{name}" in p})
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert "500" in op["responses"], path
            assert not any(p["in"] == "path" for p in op["parameters"]), path
    jira = doc["paths"]["/api/v1/connectors/filters/jira"]["post"]["requestBody"]["content"]["application/json"]
    assert set(jira["schema"]["properties"]["filterOptions"]["properties"]) == {
        "projects",
        "issueTypes",
        "modifiedAfter",
    }
    assert set(doc["components"]["securitySchemes"]) == {"userToken", "scopedToken"}


def test_docs_api_md_matches_the_openapi_document() -> None:
    from pathlib import Path

    from entrypoints.http.docs import render
    from entrypoints.http.openapi import openapi_document

    committed = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    assert committed == render(openapi_document()), "run: python -m entrypoints.http.docs > docs/api.md"
