"""The web console through ASGI: sign-in, the session cookie, CSRF, admins only, secrets never
rendered, forms that name the field at fault, and the service's own URL as a redirect origin."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from connector_core.errors import Unavailable
from entrypoints.bootstrap import build_container
from entrypoints.console import session as session_module
from entrypoints.console.links import issue_link
from entrypoints.console.session import decode, encode
from entrypoints.console.signouts import SIGN_OUTS_PREFIX
from entrypoints.http.app import create_app
from entrypoints.settings import load_settings
from tests.api.conftest import CONFLUENCE_API_TOKEN, Api
from tests.due_tokens import store_token

SERVICE = "http://127.0.0.1:8088"


@contextlib.asynccontextmanager
async def console_with(tmp_path: Path, **settings: Any) -> AsyncIterator[Api]:
    """The service with these ``settings`` (memory stores), and a client of its ASGI app."""
    loaded = load_settings(env={}, storage="memory", secrets="memory", data_dir=tmp_path, **settings)
    container = await build_container(loaded, env={})
    transport = httpx.ASGITransport(app=create_app(container), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=SERVICE) as client:
        yield Api(client, container)
    await container.aclose()


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Api]:
    async with console_with(tmp_path) as api:
        yield api


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has a form with its CSRF token"
    return found.group(1)


async def sign_in(api: Api, token: str) -> httpx.Response:
    page = await api.client.get("/admin/signin")
    return await api.client.post("/admin/signin", data={"csrf": csrf_of(page.text), "token": token})


async def test_pages_need_a_session(console: Api) -> None:
    assert (await console.client.get("/admin")).headers["location"] == "/admin/"
    for path in ("/admin/", "/admin/connectors/confluence", "/admin/events", "/admin/health"):
        r = await console.client.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/admin/signin", path


async def test_an_admin_token_signs_in_with_a_locked_down_cookie(console: Api) -> None:
    r = await sign_in(console, console.user_token(org="acme", admin=True, ttl=600))
    assert r.status_code == 303 and r.headers["location"] == "/admin/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/admin" in cookie
    max_age = re.search(r"Max-Age=(\d+)", cookie)
    assert max_age is not None and 0 < int(max_age.group(1)) <= 600  # never outlives the token it came from
    page = await console.client.get("/admin/")
    assert page.status_code == 200 and "org <strong>acme</strong>" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    token_value = cookie.split(";")[0].split("=", 1)[1]
    assert "Bearer" not in token_value and console.user_token(org="acme", admin=True) not in page.text


@pytest.mark.parametrize("exp_of", [lambda t: t + 60.5, lambda t: str(int(t) + 60)], ids=["float", "digits"])
async def test_a_session_ends_with_a_token_whose_exp_is_not_an_int(console: Api, exp_of: Any) -> None:
    """PyJWT (and so the API) takes ``exp`` as ``int(exp)``: a float (``time.time() + N``, as
    Python issuers write it) or digits. The session must end with such a token too, not last
    8 hours."""
    claims = {"userId": "alice", "orgId": "acme", "isAdmin": True, "exp": exp_of(time.time())}
    token = jwt.encode(claims, console.container.service_secrets.jwt_secret, algorithm="HS256")
    r = await sign_in(console, token)
    assert r.status_code == 303, r.text
    max_age = re.search(r"Max-Age=(\d+)", r.headers["set-cookie"])
    assert max_age is not None and 0 < int(max_age.group(1)) <= 61
    payload = console.client.cookies["cm_console"].split(".")[0]
    ends = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
    assert ends <= time.time() + 61


async def test_a_non_admin_is_refused_with_a_clear_page(console: Api) -> None:
    r = await sign_in(console, console.user_token(org="acme", user="bob", email="bob@acme.example", admin=False))
    assert r.status_code == 403
    assert "bob@acme.example</strong> is not an admin of org <strong>acme" in r.text
    assert (await console.client.get("/admin/")).headers["location"] == "/admin/signin"


async def test_a_bad_token_is_refused_on_the_form(console: Api) -> None:
    r = await sign_in(console, "not.a.token")
    assert r.status_code == 401 and "not accepted" in r.text
    scoped = await sign_in(console, console.scoped_token())
    assert scoped.status_code == 401 and "not accepted" in scoped.text


async def test_every_form_needs_its_csrf_token(console: Api) -> None:
    await sign_in(console, console.user_token(org="acme", admin=True))
    await console.client.put(
        "/api/v1/connectors/config/confluence",
        json=CONFLUENCE_API_TOKEN,
        headers=console.auth(console.user_token(org="acme", admin=True)),
    )
    page = await console.client.get("/admin/connectors/confluence")
    token = csrf_of(page.text)
    posts = ["config", "toggle", "filters", "connect", "revoke"]
    for action in posts:
        for data in ({"enabled": "true"}, {"enabled": "true", "csrf": token[:-2] + "xx"}):
            r = await console.client.post(f"/admin/connectors/confluence/{action}", data=data)
            assert r.status_code == 403 and "CSRF" in r.text, action
    r = await console.client.post("/admin/signout", data={})
    assert r.status_code == 403
    view = (await console.client.get("/api/v1/connectors/config/confluence", headers=console.admin)).json()
    assert view["isEnabled"] is False  # nothing happened
    ok = await console.client.post("/admin/connectors/confluence/toggle", data={"enabled": "true", "csrf": token})
    assert ok.status_code == 303


async def test_a_tampered_session_is_no_session(console: Api) -> None:
    await sign_in(console, console.user_token(org="acme", admin=True))
    value = console.client.cookies["cm_console"]
    payload, mac = value.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["o"] = "other-org"
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    console.client.cookies.set("cm_console", f"{forged}.{mac}", path="/admin")
    r = await console.client.get("/admin/")
    assert r.status_code == 303 and r.headers["location"] == "/admin/signin"


async def test_secrets_are_never_rendered(console: Api) -> None:
    await console.client.put(
        "/api/v1/connectors/config/confluence",
        json=CONFLUENCE_API_TOKEN,
        headers=console.auth(console.user_token(org="acme", admin=True)),
    )
    await sign_in(console, console.user_token(org="acme", admin=True))
    page = await console.client.get("/admin/connectors/confluence")
    assert page.status_code == 200
    assert "PLANTED-API-TOKEN" not in page.text
    assert re.search(r'<span class="is-set">set</span> — replace\?', page.text)
    for path in ("/admin/", "/admin/events", "/admin/health"):
        assert "PLANTED-API-TOKEN" not in (await console.client.get(path)).text


async def confluence_form(console: Api, **typed: str) -> dict[str, str]:
    """Sign in as an admin of acme; Confluence's configuration form with an API token, and ``typed``."""
    await sign_in(console, console.user_token(org="acme", admin=True))
    token = csrf_of((await console.client.get("/admin/connectors/confluence")).text)
    form = {
        "csrf": token,
        "baseUrl": "https://files.example.com",
        "auth.authType": "API_TOKEN",
        "auth.email": "ops@acme.example",
        "auth.apiToken": "TYPED-SECRET",
    }
    return {**form, **typed}


async def test_a_refused_configuration_names_the_field_and_keeps_what_was_typed(console: Api) -> None:
    form = await confluence_form(console, baseUrl="ftp://files.example.com", **{"sync.batchSize": "many"})
    r = await console.client.post("/admin/connectors/confluence/config", data=form)
    assert r.status_code == 400
    assert "sync.batchSize" in r.text and "must be a whole number" in r.text
    assert 'value="ops@acme.example"' in r.text and "TYPED-SECRET" not in r.text
    form["sync.batchSize"] = "50"
    r = await console.client.post("/admin/connectors/confluence/config", data=form)
    assert r.status_code == 400 and 'data-field="baseUrl"' in r.text and 'class="error"' in r.text
    form["baseUrl"] = "https://files.example.com"
    r = await console.client.post("/admin/connectors/confluence/config", data=form)
    assert r.status_code == 303
    view = (
        await console.client.get(
            "/api/v1/connectors/config/confluence", headers=console.auth(console.user_token(org="acme", admin=True))
        )
    ).json()
    assert view["config"]["sync"] == {"batchSize": 50}
    assert view["config"]["auth"]["hasApiToken"] is True and view["authType"] == "API_TOKEN"


async def test_a_one_time_link_works_once(console: Api) -> None:
    store = console.container.secrets_store
    token = await issue_link(store, org_id="acme", user_id="alice", email=None, now=int(time.time()))
    r = await console.client.get(f"/admin/link/{token}")
    assert r.status_code == 303 and r.headers["location"] == "/admin/" and "cm_console=" in r.headers["set-cookie"]
    console.client.cookies.clear()
    again = await console.client.get(f"/admin/link/{token}")
    assert again.status_code == 401 and "already used" in again.text
    expired = await issue_link(store, org_id="acme", user_id="alice", email=None, now=int(time.time()) - 600)
    assert (await console.client.get(f"/admin/link/{expired}")).status_code == 401


async def test_the_services_own_url_is_an_allowed_redirect_origin(tmp_path: Path) -> None:
    settings = load_settings(
        env={},
        storage="memory",
        secrets="memory",
        data_dir=tmp_path,
        public_url="https://cm.example.com",
        oauth_allowed_origins=["https://app.example.com"],
    )
    container = await build_container(settings, env={})
    policy = container.oauth.settings
    assert policy.checked_base("https://cm.example.com/admin/oauth") == "https://cm.example.com/admin/oauth"
    assert policy.checked_base("https://app.example.com") == "https://app.example.com"
    with pytest.raises(Exception, match="not allowed"):
        policy.checked_base("https://evil.example.com")
    await container.aclose()


def test_admin_url_checks_its_arguments_and_refuses_a_data_dir_never_used(tmp_path: Path) -> None:
    from tests.cli import run_cli

    typo = tmp_path / "typo"
    done = run_cli("admin-url", "--data-dir", str(typo), "--org", "acme")
    assert done.returncode == 2 and "never initialised" in done.stderr and not typo.exists()
    done = run_cli("admin-url", "--data-dir", str(typo), "--org", "acme", "--ttl", "0")
    assert done.returncode == 2 and "--ttl" in done.stderr and not typo.exists()


async def test_a_refresh_token_about_to_die_is_flagged_in_the_list(console: Api) -> None:
    from datetime import timedelta

    from connector_core.services.connectors import ConfigUpdate
    from connector_core.tokens import TokenSet

    container, ctx = console.container, console.container.ctx
    update = ConfigUpdate(
        base_url="http://localhost:3000", auth={"clientId": "c", "clientSecret": "s"}, sync={}, filters={}
    )
    await container.connectors.update_configuration("acme", "seeder", "googleWorkspace", update)
    now = ctx.clock.now()
    tokens = TokenSet(
        access_token="PLANTED-ACCESS",
        obtained_at=now,
        refresh_token="PLANTED-REFRESH",
        expires_at=now + timedelta(hours=1),
        refresh_token_expires_at=now + timedelta(days=3),  # the provider said so
        scopes=frozenset({"https://www.googleapis.com/auth/drive.readonly"}),
    )
    await store_token(container, "acme", tokens, key="googleWorkspace", app="DRIVE")
    await sign_in(console, console.user_token(org="acme", admin=True))
    page = (await console.client.get("/admin/")).text
    row = page[page.index('data-key="googleWorkspace"') :].split("</tr>")[0]
    assert "refresh-warning" in page[: page.index('data-key="googleWorkspace"')].rsplit("<tr", 1)[1]
    assert "dies within 7 days" in row and "as the provider said" in row
    assert "PLANTED-ACCESS" not in page and "PLANTED-REFRESH" not in page
    detail = (await console.client.get("/admin/connectors/googleWorkspace")).text
    assert "dies within 7 days" in detail


@pytest.mark.parametrize(
    ("field", "typed", "says"),
    [
        ("filters", '{"a\\u0000b": 1}', "contains NUL"),
        ("filters", '{"x": NaN}', "not a finite JSON number"),
        ("filters", '{"x": 9223372036854775808}', "64 bits"),
        ("sync.batchSize", "9223372036854775808", "within 64 bits"),
    ],
    ids=["nul-in-a-key", "nan", "json-int-beyond-64-bits", "number-beyond-64-bits"],
)
async def test_the_form_refuses_what_the_api_refuses(console: Api, field: str, typed: str, says: str) -> None:
    """The console reads its JSON and number fields as strictly as an API body: what no store
    keeps (NUL in a field name, NaN, an integer beyond 64 bits) is named on the form, never stored."""
    form = await confluence_form(console, **{field: typed})
    r = await console.client.post("/admin/connectors/confluence/config", data=form)
    assert r.status_code == 400, r.text
    assert field in r.text and says in r.text
    admin = console.auth(console.user_token(org="acme", admin=True))
    assert (await console.client.get("/api/v1/connectors/config/confluence", headers=admin)).json()["version"] == 0


async def _post_unfinished(app: Any, path: str, headers: list[tuple[bytes, bytes]], first: bytes) -> tuple[int, bytes]:
    """POST ``path`` straight to the ASGI app with a body that starts with ``first`` and never
    ends (a client trickling its form); the status and body of the answer, or a failure after 5 s."""
    chunks = [{"type": "http.request", "body": first, "more_body": True}]

    async def receive() -> dict[str, Any]:
        if chunks:
            return chunks.pop()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded"), *headers],
        "client": ("192.0.2.1", 1),
        "server": ("127.0.0.1", 8088),
    }
    try:
        await asyncio.wait_for(app(scope, receive, send), 5)
    except TimeoutError:
        pytest.fail(f"POST {path}: no answer within 5 s")
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body


async def test_a_trickled_form_is_answered_408_like_an_api_body(tmp_path: Path) -> None:
    """The form is read before the CSRF and admin checks: an anonymous client trickling a
    sign-in form must not hold a connection for longer than an API body may take; and a
    ``Content-Length`` above the form limit is refused before anything is read."""
    settings = load_settings(env={}, storage="memory", secrets="memory", data_dir=tmp_path)
    container = await build_container(settings, env={})
    app = create_app(container, body_timeout_seconds=0.5)
    try:
        started = time.monotonic()
        status, body = await _post_unfinished(app, "/admin/signin", [], b"csrf=x&token=")
        assert status == 408 and time.monotonic() - started < 3
        assert b"did not arrive within 0.5 seconds" in body and b"<title>" in body  # the console's error page
        declared = [(b"content-length", str(256 * 1024 + 1).encode())]
        status, body = await _post_unfinished(app, "/admin/signin", declared, b"")
        assert status == 413 and b"larger than 256 KiB" in body
    finally:
        await container.aclose()


async def test_a_form_too_large_is_refused_413(console: Api) -> None:
    page = await console.client.get("/admin/signin")
    form = {"csrf": csrf_of(page.text), "token": "x" * (256 * 1024)}
    r = await console.client.post("/admin/signin", data=form)
    assert r.status_code == 413 and "larger than 256 KiB" in r.text and r.headers["connection"] == "close"


async def test_in_proxy_mode_no_connector_form_changes_the_local_store(tmp_path: Path) -> None:
    """With ``backend_url``, connectors belong to the backend: the connector pages say so, and
    so does every connector action (before, a form wrote to this instance's own store, unseen,
    and answered "saved")."""
    async with console_with(tmp_path, backend_url="http://127.0.0.1:9") as proxied:
        client, container = proxied.client, proxied.container
        assert (await sign_in(proxied, proxied.user_token(org="acme", admin=True))).status_code == 303
        token = csrf_of((await client.get("/admin/events")).text)
        form = {
            "csrf": token,
            "enabled": "true",
            "baseUrl": "https://files.example.com",
            "auth.authType": "API_TOKEN",
            "auth.email": "ops@acme.example",
            "auth.apiToken": "TYPED-SECRET",
        }
        for action in ("config", "toggle", "filters", "connect", "revoke"):
            r = await client.post(f"/admin/connectors/confluence/{action}", data=form)
            assert r.status_code == 409 and "managed elsewhere" in r.text, action
        for path in ("/admin/", "/admin/connectors/confluence", "/admin/connectors/confluence/revoke"):
            r = await client.get(path)
            assert r.status_code == 409 and "managed elsewhere" in r.text, path
        view = await container.connectors.get("acme", "confluence")
        assert view.connector.config.base_url is None and view.connector.is_enabled is False
        assert (await client.get("/admin/events")).status_code == 200


@pytest.mark.parametrize(
    ("redirect_path", "callback"),
    [
        ("/connectors/oauth/callback/{connector}", "/admin/oauth/connectors/oauth/callback/googleWorkspace"),
        ("/oauth/callback", "/admin/oauth/googleWorkspace/oauth/callback"),
        ("cb/{connector}/{connector}", "/admin/oauth/cb/googleWorkspace/googleWorkspace"),
    ],
    ids=["default", "without-connector", "connector-twice"],
)
async def test_the_console_callback_finds_its_connector_whatever_the_redirect_path(
    tmp_path: Path, redirect_path: str, callback: str
) -> None:
    """``oauth_redirect_path`` without ``{connector}`` is valid for the API (a front end with
    one callback page calls the route that names the connector). The console's callback then
    finds the connector in its own base, ``/admin/oauth/{key}`` (before: every console callback
    was a 500)."""
    from connector_core.services.connectors import ConfigUpdate

    async with console_with(tmp_path, oauth_redirect_path=redirect_path) as console:
        client, container = console.client, console.container
        update = ConfigUpdate(
            base_url="http://localhost:3000", auth={"clientId": "c", "clientSecret": "s"}, sync={}, filters={}
        )
        await container.connectors.update_configuration("acme", "seeder", "googleWorkspace", update)
        await sign_in(console, console.user_token(org="acme", admin=True))
        page = await client.get("/admin/connectors/googleWorkspace")
        expected = f"{SERVICE}{callback}"
        assert f'<code id="redirect-uri">{expected}</code>' in page.text  # the URI to register
        r = await client.post("/admin/connectors/googleWorkspace/connect", data={"csrf": csrf_of(page.text)})
        assert r.status_code == 303
        sent = httpx.URL(r.headers["location"]).params
        assert sent["redirect_uri"] == expected
        back = httpx.URL(expected).path
        refused = await client.get(back, params={"state": sent["state"], "error": "access_denied"})
        assert refused.status_code == 200 and "authorization failed: access_denied" in refused.text
        r = await client.get("/admin/oauth/oauth/callback", params={"state": "x", "code": "y"})
        assert r.status_code == 404 and "not an authorization callback" in r.text


async def test_the_cookie_is_secure_when_the_public_url_is_https(tmp_path: Path) -> None:
    """Behind a TLS-terminating proxy the app sees http (uvicorn trusts X-Forwarded-Proto from
    127.0.0.1 only); browsers reach it at ``public_url``: an https one makes the cookie Secure."""
    async with console_with(tmp_path, public_url="https://cm.example.com") as console:
        client = console.client  # it keeps Secure cookies for https: each is sent back by hand

        def secure_cookie(r: httpx.Response) -> dict[str, str]:
            assert "; Secure" in r.headers["set-cookie"], r.headers["set-cookie"].split(";", 1)[1]  # not the value
            return {"Cookie": r.headers["set-cookie"].split(";")[0]}

        form = await client.get("/admin/signin")
        token = console.user_token(org="acme", admin=True)
        r = await client.post(
            "/admin/signin", data={"csrf": csrf_of(form.text), "token": token}, headers=secure_cookie(form)
        )
        assert r.status_code == 303
        page = await client.get("/admin/", headers=secure_cookie(r))
        assert page.status_code == 200
        r = await client.post("/admin/signout", data={"csrf": csrf_of(page.text)}, headers=secure_cookie(r))
        assert r.status_code == 303 and "Max-Age=0" in r.headers["set-cookie"]
        secure_cookie(r)  # the deletion too


async def test_signing_out_ends_a_copied_cookie_too(console: Api) -> None:
    """Sign-out ends every session of the user, not only the browser's cookie: a copied cookie
    (or the user's session in another browser) no longer works; another user's session does,
    and so does the next sign-in."""
    client, transport = console.client, console.client._transport
    await sign_in(console, console.user_token(org="acme", user="alice", admin=True, ttl=3600))
    copied = {"cm_console": client.cookies["cm_console"]}
    async with (
        httpx.AsyncClient(transport=transport, base_url=SERVICE) as bobs,
        httpx.AsyncClient(transport=transport, base_url=SERVICE, cookies=copied) as thief,
    ):
        await sign_in(Api(bobs, console.container), console.user_token(org="acme", user="bob", admin=True))
        assert (await thief.get("/admin/")).status_code == 200  # a copy works while alice is signed in
        page = await client.get("/admin/")
        r = await client.post("/admin/signout", data={"csrf": csrf_of(page.text)})
        assert r.status_code == 303 and r.headers["location"] == "/admin/signin"
        replayed = await thief.get("/admin/")
        assert replayed.status_code == 303 and replayed.headers["location"] == "/admin/signin"
        assert (await bobs.get("/admin/")).status_code == 200  # bob's session is not alice's
    await sign_in(console, console.user_token(org="acme", user="alice", admin=True))
    assert (await client.get("/admin/")).status_code == 200


def sign_outs_unavailable(console: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, the secret store fails on the users' sign-out records (as when etcd is down)."""
    inner = console.container.secrets_store.inner  # type: ignore[attr-defined]
    real_get, real_put = inner.get, inner.put

    async def get(key: str) -> Any:
        if "/signOutCounts/" in key:
            raise Unavailable("the secret store is unavailable")
        return await real_get(key)

    async def put(key: str, value: str, **kwargs: Any) -> Any:
        if "/signOutCounts/" in key:
            raise Unavailable("the secret store is unavailable")
        return await real_put(key, value, **kwargs)

    monkeypatch.setattr(inner, "get", get)
    monkeypatch.setattr(inner, "put", put)


async def test_when_sign_outs_cannot_be_read_signing_out_still_clears_the_cookie(
    console: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen: with the secret store down, sign-out answered 503 without clearing the cookie, and
    the sign-in page answered 503 while the cookie was there. Now signed-in pages still fail
    closed (503, a page that says why), the sign-in page renders, and sign-out clears this
    browser's cookie and says the other sessions could not be ended."""
    client = console.client
    token = console.user_token(org="acme", user="alice", admin=True, ttl=3600)
    await sign_in(console, token)
    csrf = csrf_of((await client.get("/admin/")).text)
    sign_outs_unavailable(console, monkeypatch)

    for path in ("/admin/", "/admin/events"):
        refused = await client.get(path)
        assert refused.status_code == 503, path
        assert "cannot be checked" in refused.text and "set-cookie" not in refused.headers
        assert "org <strong>acme" not in refused.text  # nothing of the signed-in pages
    form = await client.get("/admin/signin")
    assert form.status_code == 200 and 'name="token"' in form.text
    assert "set-cookie" not in form.headers and csrf_of(form.text) == csrf  # the cookie is left as it is

    r = await client.post("/admin/signout", data={"csrf": csrf})
    assert r.status_code == 503 and "Max-Age=0" in r.headers["set-cookie"]
    assert "Signed out of this browser only" in r.text and "sign in and sign out" in r.text
    assert "cm_console" not in client.cookies
    assert (await client.get("/admin/")).headers["location"] == "/admin/signin"
    # signing in needs the sign-out record too: refused on the form, saying why
    again = await sign_in(console, token)
    assert again.status_code == 503 and "not possible right now" in again.text

    secrets = console.container.service_secrets
    for text in [r.text, again.text, refused.text, caplog.text]:
        assert secrets.cookie_secret not in text and secrets.jwt_secret not in text and token not in text


async def test_a_sign_out_after_another_browsers_is_not_refused(console: Api) -> None:
    """Seen: browser A signs out (ending B's session too), then B's sign-out answered 403 "Form
    refused" (its session was gone before the CSRF check) and kept its dead cookie. Now it just
    clears the cookie and goes to the sign-in page; any other form of B's does not run either."""
    client, transport = console.client, console.client._transport
    token = console.user_token(org="acme", user="alice", admin=True, ttl=3600)

    async def sign_out(browser: httpx.AsyncClient) -> httpx.Response:
        return await browser.post("/admin/signout", data={"csrf": csrf_of((await browser.get("/admin/")).text)})

    async with httpx.AsyncClient(transport=transport, base_url=SERVICE) as other:
        for form in ("signout", "connectors/confluence/toggle"):
            await sign_in(console, token)
            await sign_in(Api(other, console.container), token)
            others = csrf_of((await other.get("/admin/")).text)
            assert (await sign_out(client)).status_code == 303
            r = await other.post(f"/admin/{form}", data={"csrf": others, "enabled": "true"})
            assert r.status_code == 303 and r.headers["location"] == "/admin/signin", form
            assert "Max-Age=0" in r.headers["set-cookie"] and "cm_console" not in other.cookies, form
    view = (await client.get("/api/v1/connectors/config/confluence", headers=console.admin)).json()
    assert view["isEnabled"] is False  # the toggle of the ended session did not run


async def test_the_sign_out_record_does_not_say_whose_it_is(console: Api) -> None:
    """Seen: the record was named by an unsalted SHA-256 of org and user, so anyone who can
    list the secret store's keys could confirm that a known user signed out. Its name is now
    keyed with the cookie secret."""
    await sign_in(console, console.user_token(org="acme", user="alice", admin=True))
    await console.client.post("/admin/signout", data={"csrf": csrf_of((await console.client.get("/admin/")).text)})
    keys = list(await console.container.secrets_store.inner.list_prefix(SIGN_OUTS_PREFIX))  # type: ignore[attr-defined]
    assert len(keys) == 1
    name = keys[0].removeprefix(SIGN_OUTS_PREFIX)
    for guess in ("acme\x00alice", "acme/alice", "acme:alice", "alice"):
        assert name != hashlib.sha256(guess.encode()).hexdigest(), guess
    assert "acme" not in name and "alice" not in name
    assert console.container.service_secrets.cookie_secret not in keys[0]


async def test_a_cookie_from_before_keyed_sign_out_records_is_no_session(
    console: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sign-out records moved to keyed names; counted under them a cookie signed out before
    would be valid again (its user's count starts from 0). Such cookies (context v1) are no
    session: every console user signs in once more."""
    await sign_in(console, console.user_token(org="acme", user="alice", admin=True))
    assert (await console.client.get("/admin/")).status_code == 200
    session = decode(console.client.cookies["cm_console"], console.container.service_secrets.cookie_secret, 0)
    assert session is not None and session.signed_in
    monkeypatch.setattr(session_module, "_CONTEXT", b"connector-manager console session v1\x00")
    old = encode(session, console.container.service_secrets.cookie_secret)
    monkeypatch.undo()
    console.client.cookies.set("cm_console", old, path="/admin")
    r = await console.client.get("/admin/")
    assert r.status_code == 303 and r.headers["location"] == "/admin/signin"
