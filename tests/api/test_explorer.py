"""GET /docs (an API explorer from packaged files, nothing from the internet) and GET /."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from entrypoints.http.explorer import as_openapi_30
from tests.api.conftest import Api


class _Refs(HTMLParser):
    """Every URL a page makes the browser load or offers as a link."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.loads.append(str(found["src"]))
        if tag == "link" and found.get("href"):
            self.loads.append(str(found["href"]))
        if tag == "img" and found.get("src"):
            self.loads.append(str(found["src"]))
        if tag == "a" and found.get("href"):
            self.links.append(str(found["href"]))


def refs(page: str) -> _Refs:
    parser = _Refs()
    parser.feed(page)
    return parser


def local(url: str) -> bool:
    return url.startswith("/") and not url.startswith("//")


async def test_docs_loads_only_assets_this_service_serves(api: Api) -> None:
    r = await api.client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    loads = refs(r.text).loads
    assert any(u.endswith("swagger-ui-bundle.js") for u in loads) and any(u.endswith(".css") for u in loads)
    assert [u for u in loads if not local(u)] == []
    for url in loads:
        asset = await api.client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0
        if url.endswith(".js"):
            # the explorer's own set-up points at this service's document, no online validator
            if url == "/docs/init.js":
                assert '"/docs/openapi.json"' in asset.text and "validatorUrl: null" in asset.text
                assert not re.search(r"https?://", asset.text)


def _types(node: Any) -> list[Any]:
    if isinstance(node, list):
        return [t for v in node for t in _types(v)]
    if isinstance(node, dict):
        own = [node["type"]] if "type" in node else []
        return own + [t for v in node.values() for t in _types(v)]
    return []


async def test_docs_explores_the_openapi_document_in_the_version_its_explorer_reads(api: Api) -> None:
    init = (await api.client.get("/docs/init.js")).text
    (url,) = re.findall(r'url: "([^"]+)"', init)
    shown = (await api.client.get(url)).json()
    served = (await api.client.get("/openapi.json")).json()
    # the bundled Swagger UI (4.x) renders OpenAPI 3.0 only: the same document, spelled the 3.0 way
    assert re.fullmatch(r"3\.0\.\d+", shown["openapi"])
    assert shown["paths"].keys() == served["paths"].keys()
    assert {m for ops in shown["paths"].values() for m in ops} == {m for ops in served["paths"].values() for m in ops}
    assert any(isinstance(t, list) for t in _types(served))  # 3.1's nullable spelling is there ...
    assert not any(isinstance(t, list) for t in _types(shown))  # ... and not in what the explorer reads
    token = shown["components"]["schemas"]["Connector"]["properties"]["token"]
    assert token["type"] == "object" and token["nullable"] is True


def test_the_30_rendition_keeps_every_alternative() -> None:
    assert as_openapi_30({"type": ["string", "null"]}) == {"type": "string", "nullable": True}
    assert as_openapi_30({"type": ["string", "integer"]}) == {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert as_openapi_30({"items": [{"type": "string"}]}) == {"items": [{"type": "string"}]}


async def test_an_unknown_asset_is_404(api: Api) -> None:
    assert (await api.client.get("/docs/assets/nothing-here.js")).status_code == 404
    assert (await api.client.get("/docs/assets/../../pyproject.toml")).status_code == 404


async def test_root_points_browsers_and_scripts_to_the_console_docs_and_openapi(api: Api) -> None:
    page = await api.client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert {"/admin", "/docs", "/openapi.json"} <= set(refs(page.text).links)
    as_json = await api.client.get("/", headers={"Accept": "application/json"})
    assert as_json.status_code == 200
    assert as_json.json()["admin"] == "/admin"
    assert as_json.json()["docs"] == "/docs" and as_json.json()["openapi"] == "/openapi.json"
