"""``connector-manager import`` of values the existing service legitimately stored in a form our
schema refuses (its front-end asked the SharePoint domain as a URL, and left the tenant
optional), and of the Google token it chooses when the consenting user's cannot be used; on the
real etcd and MongoDB servers (the data laid down by tests/fakes/pipeshub.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from adapters.pipeshub.stored_values import as_its_form_took_them
from connector_core.services.importing import ImportOutcome, ImportResult
from connector_core.tokens import TokenRecord
from tests.fakes.oauth_provider import FakeOAuthProvider
from tests.fakes.pipeshub import INDIVIDUAL, SeedDeployment
from tests.integration.test_import_pipeshub import container, do_import, idp, seed

pytestmark = [pytest.mark.etcd, pytest.mark.mongo]

__all__ = ["idp", "seed"]  # the fixtures, shared with the main import tests

NOW_MS = int(time.time() * 1000)
HOUR_MS = 3_600_000


async def google_token(tmp_path: Path, idp: FakeOAuthProvider, org: str) -> TokenRecord | None:
    """The Google Workspace token record stored here for ``org``."""
    c = await container(tmp_path, idp)
    try:
        async with c.ctx.uow() as uow:
            return await uow.tokens.get_for_connector(org, "googleWorkspace")
    finally:
        await c.aclose()


def item(results: list[ImportResult], label: str) -> ImportResult:
    (found,) = [r for r in results if r.item.split(" (from")[0] == label]
    return found


async def test_a_sharepoint_domain_stored_as_a_url_and_an_empty_tenant_are_imported_said_so(
    tmp_path: Path, seed: SeedDeployment, idp: FakeOAuthProvider, etcd_endpoint: tuple[str, int], mongo_url: str
) -> None:
    org, other = await seed.org(account_type="individual"), await seed.org(account_type="individual")
    await seed.sharepoint_config(
        org, client_id="sp-client", client_secret="FORMS-SP-SECRET", tenant="", domain="https://contoso.sharepoint.com/"
    )
    alice = await seed.user(org, "alice@acme.example")
    await seed.onedrive_config(org, client_id="od-client", client_secret="FORMS-OD-SECRET", tenant="")
    await seed.connector_doc(org, "SharePoint Online", enabled=True, by=alice)
    # only a URL of a host alone is taken as the host: anything else stays, for the check to report
    await seed.sharepoint_config(
        other,
        client_id="sp-client",
        client_secret="FORMS-SP-SECRET-2",
        tenant="contoso",
        domain="https://contoso.sharepoint.com:8443/sites/x",
    )

    done, _ = await do_import(tmp_path, seed, etcd_endpoint, mongo_url)
    imported = done.report.of(ImportOutcome.IMPORTED)
    sharepoint = item(imported, f"sharepointOnline of org {org}")
    assert any(
        "sharepointDomain stored there as a URL" in n and "host name contoso.sharepoint.com" in n
        for n in sharepoint.notes
    ), sharepoint.notes
    for found in (sharepoint, item(imported, f"onedrive of org {org}")):
        assert any("tenantId stored empty there" in n and "not set" in n for n in found.notes), found.notes
    assert any("not enabled here" in n and "missing auth.tenantId" in n for n in sharepoint.notes), sharepoint.notes
    refused = item(done.report.of(ImportOutcome.FAILED), f"sharepointOnline of org {other}")
    assert "auth.sharepointDomain has an invalid format" in str(refused.reason), refused
    assert not any("sharepointDomain" in n for n in refused.notes), refused.notes
    assert not any(s in repr(done.report) for s in ("FORMS-SP-SECRET", "FORMS-OD-SECRET")), done.report

    c = await container(tmp_path, idp)
    try:
        stored = (await c.connectors.get(str(org), "sharepointOnline")).connector
        assert dict(stored.config.auth) == {
            "authType": "OAUTH",
            "clientId": "sp-client",
            "hasAdminConsent": False,
            "sharepointDomain": "contoso.sharepoint.com",
        }
        assert "tenantId" not in dict((await c.connectors.get(str(org), "onedrive")).connector.config.auth)
        assert (await c.connectors.get(str(other), "sharepointOnline")).connector.is_new
    finally:
        await c.aclose()


@pytest.mark.parametrize(
    ("stored", "imported"),
    [
        ("https://contoso.sharepoint.com", "contoso.sharepoint.com"),
        ("http://contoso.sharepoint.com/", "contoso.sharepoint.com"),
        ("HTTPS://Contoso.SharePoint.com", "Contoso.SharePoint.com"),
        ("contoso.sharepoint.com", "contoso.sharepoint.com"),  # a host name already
        # not a URL of a host alone: left as stored, for the check to report
        ("https://contoso.sharepoint.com/sites/x", None),
        ("https://user@contoso.sharepoint.com", None),
        ("https://contoso.sharepoint.com:443", None),
        ("https://contoso.sharepoint.com/?a=1", None),
        ("https://contoso.sharepoint.com//", None),
        ("https://contoso.sharepoint.com\n", None),
        ("ftp://contoso.sharepoint.com", None),
        ("https://", None),
    ],
)
def test_only_a_url_of_a_host_alone_becomes_that_host(stored: str, imported: str | None) -> None:
    auth, notes = as_its_form_took_them({"sharepointDomain": stored, "tenantId": "contoso"})
    assert auth == {"sharepointDomain": imported or stored, "tenantId": "contoso"}
    assert bool(notes) == (imported is not None and imported != stored), notes


async def test_when_the_consenting_users_token_is_unusable_a_refreshable_one_beats_a_later_expiry(
    tmp_path: Path, seed: SeedDeployment, idp: FakeOAuthProvider, etcd_endpoint: tuple[str, int], mongo_url: str
) -> None:
    org = await seed.org(account_type="individual")
    alice, bob, carol, dan = [await seed.user(org, f"{n}@acme.example") for n in ("alice", "bob", "carol", "dan")]
    await seed.google_oauth_config("forms-google-client", "FORMS-GOOGLE-SECRET")
    await seed.put_encrypted(f"{INDIVIDUAL}/{alice}", {"access_token": "", "refresh_token": ""})  # unusable
    # live for an hour, then dead: no refresh token
    await seed.put_encrypted(
        f"{INDIVIDUAL}/{bob}", {"access_token": "FORMS-ACCESS-BOB", "access_token_expiry_time": NOW_MS + HOUR_MS}
    )
    # its refresh token's stored expiry has passed: it cannot refresh either
    await seed.put_encrypted(
        f"{INDIVIDUAL}/{carol}",
        {
            "access_token": "FORMS-ACCESS-CAROL",
            "refresh_token": "FORMS-REFRESH-CAROL",
            "access_token_expiry_time": NOW_MS + 2 * HOUR_MS,
            "refresh_token_expiry_time": NOW_MS - HOUR_MS,
        },
    )
    # expired access, but a refresh token that is still good: the one that keeps working
    await seed.google_individual_credentials(
        dan, access_token="FORMS-ACCESS-DAN", refresh_token="FORMS-REFRESH-DAN", expiry_ms=NOW_MS - HOUR_MS
    )
    await seed.connector_doc(org, "Google Workspace", enabled=True, by=alice)

    done, _ = await do_import(tmp_path, seed, etcd_endpoint, mongo_url)
    google = item(done.report.of(ImportOutcome.IMPORTED), f"googleWorkspace of org {org}")
    assert f"{INDIVIDUAL}/{dan}" in google.item, done.report
    assert any(f"user {dan}'s is imported" in n for n in google.notes), google.notes
    skipped = {r.item: str(r.reason) for r in done.report.of(ImportOutcome.SKIPPED)}
    for user in (bob, carol):
        assert f"user {dan}'s is imported" in skipped[f"{INDIVIDUAL}/{user}"], done.report
    assert "FORMS-" not in repr(done.report)

    record = await google_token(tmp_path, idp, str(org))
    assert record is not None and record.account_id == str(dan)
    assert record.tokens.refresh_token == "FORMS-REFRESH-DAN"
