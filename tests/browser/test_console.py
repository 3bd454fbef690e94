"""The web console in headless Chromium, against a real ``serve`` process and the fake OAuth
provider: sign in with a one-time link, configure Confluence with an API token, connect a
custom OpenID provider end to end, see a revoked grant flagged, toggle, see the events, revoke,
sign out; a form without its CSRF token, a non-admin and a used link are refused.

The tests run in file order and share one browser and one service (each signs in as it needs).
A screenshot of each page lands in test-artifacts/console/.
"""

from __future__ import annotations

import httpx
import pytest

from tests.browser.chromium import Browser
from tests.browser.conftest import CLIENT_ID, CLIENT_SECRET, ORG, PROVIDER, Service
from tests.fakes.oauth_provider import FakeOAuthProvider

pytestmark = [pytest.mark.slow, pytest.mark.browser]

API_TOKEN = "atl-api-token-PLANTED-0123456789"
SECRETS = (API_TOKEN, CLIENT_SECRET)


def never_shows_a_secret(browser: Browser) -> None:
    source = browser.source
    for secret in SECRETS:
        assert secret not in source


def sign_in(browser: Browser, service: Service) -> None:
    browser.open(service.admin_url())
    assert browser.url == f"{service.url}/admin/"


def test_a_one_time_link_signs_in_once_and_sign_out_ends_the_session(browser: Browser, service: Service) -> None:
    link = service.admin_url()
    assert "/admin/link/" in link
    browser.open(link)
    assert browser.url == f"{service.url}/admin/"  # the link is not left in the address bar
    assert f"org {ORG}" in browser.text(".who")
    rows = browser.all("#connectors tbody tr")
    assert {r.get_attribute("data-key") for r in rows} >= {"confluence", "googleWorkspace", PROVIDER}
    cookie = browser.driver.get_cookie("cm_console")
    assert cookie is not None and cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/admin"
    browser.shot("connectors-empty")

    browser.submit("#signout")
    assert browser.url == f"{service.url}/admin/signin"
    browser.shot("signin")
    browser.open(f"{service.url}/admin/")
    assert browser.url == f"{service.url}/admin/signin"  # signed out: back to the sign-in page

    browser.open(link)  # the same link a second time
    assert "cannot be used" in browser.text("h1")
    assert "already used" in browser.text("#message")
    browser.shot("link-used")
    browser.open(f"{service.url}/admin/")
    assert browser.url == f"{service.url}/admin/signin"


def test_configure_confluence_with_an_api_token(browser: Browser, service: Service) -> None:
    sign_in(browser, service)
    browser.open(f"{service.url}/admin/connectors/confluence")
    browser.choose("#f-auth-authType", "API_TOKEN")
    # the form follows the authentication type: OAuth's client fields are hidden
    assert not browser.find("[data-field='auth.clientId']").is_displayed()
    assert browser.find("[data-field='auth.apiToken']").is_displayed()
    # an address the browser takes for a URL, which the connector's schema refuses (not http)
    browser.fill("#f-baseUrl", "ftp://your-company.atlassian.net")
    browser.fill("#f-auth-email", "ops@acme.example")
    browser.fill("#f-auth-apiToken", API_TOKEN)
    browser.submit("#save-config")
    # refused, with the field at fault named, and what was typed kept (but not the secret)
    assert "baseUrl" in browser.text("#problem")
    assert browser.find("[data-field='baseUrl'] .error").is_displayed()
    assert browser.find("#f-auth-email").get_attribute("value") == "ops@acme.example"
    assert browser.find("#f-auth-apiToken").get_attribute("value") == ""
    never_shows_a_secret(browser)
    browser.shot("connector-config-refused")

    browser.fill("#f-baseUrl", "https://your-company.atlassian.net")
    browser.fill("#f-auth-apiToken", API_TOKEN)
    browser.choose("#f-sync-schedule", "daily")
    browser.submit("#save-config")
    assert "Configuration saved" in browser.text(".notice")
    secret = browser.find("[data-field='auth.apiToken'] details.secret summary")
    assert "set — replace?" in secret.text
    never_shows_a_secret(browser)

    browser.submit("#toggle")
    assert "Connector enabled" in browser.text(".notice")
    assert browser.text("#enabled-state") == "enabled"
    browser.shot("connector-confluence")


def test_connect_a_custom_openid_provider_in_the_browser(
    browser: Browser, service: Service, idp: FakeOAuthProvider
) -> None:
    sign_in(browser, service)
    browser.open(f"{service.url}/admin/connectors/{PROVIDER}")
    redirect_uri = browser.text("#redirect-uri")
    assert redirect_uri.startswith(f"{service.url}/admin/oauth/")
    idp.register_client(CLIENT_ID, CLIENT_SECRET, [redirect_uri])
    browser.fill("#f-baseUrl", service.url)
    browser.fill("#f-auth-clientId", CLIENT_ID)
    browser.fill("#f-auth-clientSecret", CLIENT_SECRET)
    browser.submit("#save-config")
    assert "Configuration saved" in browser.text(".notice")

    browser.submit("#connect")  # → the provider → the console's own callback page
    assert browser.url == f"{service.url}/admin/connectors/{PROVIDER}?done=connected"
    assert "Authorized" in browser.text(".notice")
    assert browser.text("#enabled-state") == "enabled"
    assert "authenticated" in browser.text(".heading .badge")
    assert "in 59 min" in browser.text("#token") or "in 1 h" in browser.text("#token")
    assert idp.stats()["authorization_code_grants"] >= 1
    never_shows_a_secret(browser)
    browser.shot("connector-connected")

    # the token is really there: a service gets it through the API
    scoped = {"Authorization": f"Bearer {service.scoped_token()}"}
    r = httpx.get(f"{service.url}/api/v1/connectors/internal/credentials/{PROVIDER}", headers=scoped, timeout=10)
    assert r.status_code == 200 and idp.is_access_token_valid(r.json()["accessToken"])


def test_a_grant_revoked_at_the_provider_is_flagged(browser: Browser, service: Service, idp: FakeOAuthProvider) -> None:
    assert idp.revoke_grants(CLIENT_ID) >= 1
    scoped = {"Authorization": f"Bearer {service.scoped_token()}"}
    r = httpx.post(
        f"{service.url}/api/v1/connectors/internal/refreshIndividualConnectorToken",
        json={"connector": PROVIDER},
        headers=scoped,
        timeout=10,
    )
    assert r.status_code == 409, r.text  # the refresh token is dead: a person must authorize again

    sign_in(browser, service)
    row = browser.find(f"#connectors tr[data-key='{PROVIDER}']")
    assert "needs-reauth" in (row.get_attribute("class") or "")
    assert "needs reauthentication" in row.text
    assert "invalid_grant" in row.find_element("css selector", ".reason").text
    assert "1 connector needs re-authorization" in browser.text("#reauth-count")
    browser.shot("connectors-needs-reauth")

    browser.open(f"{service.url}/admin/?state=NEEDS_REAUTHENTICATION")
    assert [r.get_attribute("data-key") for r in browser.all("#connectors tbody tr")] == [PROVIDER]
    browser.open(f"{service.url}/admin/connectors/{PROVIDER}")
    assert "Needs re-authorization" in browser.text("#reauth")
    browser.shot("connector-needs-reauth")


def test_toggle_and_the_event_timeline(browser: Browser, service: Service) -> None:
    sign_in(browser, service)
    browser.open(f"{service.url}/admin/connectors/{PROVIDER}")
    browser.submit("#toggle")
    assert "Connector disabled" in browser.text(".notice")
    assert browser.text("#enabled-state") == "disabled"

    browser.open(f"{service.url}/admin/events")
    types = [e.text for e in browser.all("#events tbody .etype")]
    assert types[0] == "appDisabled"  # newest first
    assert {"appEnabled", "connectorConfigured", "TOKEN_CREATED", "TOKEN_EXPIRED", "connectorAuthStatusChanged"} <= set(
        types
    )
    browser.shot("events")

    browser.choose("#event-filters select[name=connector]", "confluence")
    browser.submit("#event-filters button")
    shown = {r.find_element("css selector", "td:nth-child(2)").text for r in browser.all("#events tbody tr")}
    assert shown == {"confluence"}
    browser.choose("#event-filters select[name=type]", "appEnabled")
    browser.submit("#event-filters button")
    assert [e.text for e in browser.all("#events tbody .etype")] == ["appEnabled"]
    browser.shot("events-filtered")


def test_revoke_asks_for_a_confirmation(browser: Browser, service: Service) -> None:
    sign_in(browser, service)
    browser.open(f"{service.url}/admin/connectors/{PROVIDER}")
    browser.navigate(lambda: browser.find("#revoke").click())
    assert "Revoke" in browser.text("h1")
    browser.shot("revoke-confirm")
    browser.submit("#confirm-revoke")
    assert "Tokens revoked" in browser.text(".notice")
    assert browser.all("#revoke") == []


def test_health_page(browser: Browser, service: Service) -> None:
    sign_in(browser, service)
    browser.open(f"{service.url}/admin/health")
    assert browser.text("#overall") == "healthy"
    assert "storage" in browser.text("#dependencies")
    browser.shot("health")


def test_a_form_without_its_csrf_token_is_refused(browser: Browser, service: Service) -> None:
    sign_in(browser, service)
    browser.open(f"{service.url}/admin/connectors/confluence")
    assert browser.text("#enabled-state") == "enabled"
    browser.driver.execute_script("document.querySelector('#actions form input[name=csrf]').remove()")
    browser.submit("#toggle")
    assert browser.text("h1") == "Form refused"
    assert "CSRF" in browser.text("#message")
    browser.shot("csrf-refused")
    browser.open(f"{service.url}/admin/connectors/confluence")
    assert browser.text("#enabled-state") == "enabled"  # nothing changed


def test_a_non_admin_is_refused_and_an_admin_token_signs_in(browser: Browser, service: Service) -> None:
    browser.driver.delete_all_cookies()
    browser.open(f"{service.url}/admin/signin")
    browser.fill("#token", service.user_token("bob", admin=False))
    browser.submit("form[action='/admin/signin'] button")
    assert browser.text("h1") == "This console is for org admins"
    assert f"bob@acme.example is not an admin of org {ORG}" in browser.text("#message")
    browser.shot("not-admin")
    browser.open(f"{service.url}/admin/")
    assert browser.url == f"{service.url}/admin/signin"

    browser.fill("#token", "not.a.token")
    browser.submit("form[action='/admin/signin'] button")
    assert "not accepted" in browser.text("#problem")

    browser.fill("#token", service.user_token("carol", admin=True))
    browser.submit("form[action='/admin/signin'] button")
    assert browser.url == f"{service.url}/admin/"
    assert "carol@acme.example" in browser.text(".who")
