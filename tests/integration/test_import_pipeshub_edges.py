"""``connector-manager import`` at the edges of the existing deployment's data, on the real etcd
and MongoDB servers (the data laid down by tests/fakes/pipeshub.py): a token stored without an
expiry, a secret stored as null, and a person saving the same connector while the import runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connector_core.services.connectors import ConfigUpdate
from connector_core.services.context import secret_path
from connector_core.services.importing import ConnectorImport, ImportOutcome
from tests.fakes.oauth_provider import FakeOAuthProvider
from tests.fakes.pipeshub import SeedDeployment
from tests.integration.test_import_pipeshub import container, do_import, idp, seed

pytestmark = [pytest.mark.etcd, pytest.mark.mongo]

__all__ = ["idp", "seed"]  # the fixtures, shared with the main import tests


async def test_an_imported_token_without_an_expiry_is_refreshed_at_the_first_chance(
    tmp_path: Path, seed: SeedDeployment, idp: FakeOAuthProvider, etcd_endpoint: tuple[str, int], mongo_url: str
) -> None:
    idp.register_client("edge-google-client", "edge-google-secret")
    refresh = idp.mint_refresh_token("edge-google-client", ["openid", "email"])
    org = await seed.org(account_type="individual")
    alice = await seed.user(org, "alice@edge.example")
    await seed.google_oauth_config("edge-google-client", "edge-google-secret")
    await seed.google_individual_credentials(alice, access_token="EDGE-ACCESS", refresh_token=refresh, expiry_ms=None)
    await seed.connector_doc(org, "Google Workspace", enabled=True, by=alice)

    done, _ = await do_import(tmp_path, seed, etcd_endpoint, mongo_url)
    imported = [r for r in done.report.of(ImportOutcome.IMPORTED) if r.item.startswith("googleWorkspace")]
    assert len(imported) == 1 and "no expiry stored there: refreshed at the first chance" in imported[0].notes

    c = await container(tmp_path, idp)
    try:
        report = await c.refresher.refresh_due(batch_size=100)
        assert report.refreshed == 1, report
        async with c.ctx.uow() as uow:
            record = await uow.tokens.get_for_connector(str(org), "googleWorkspace")
        assert record is not None and idp.is_access_token_valid(record.tokens.access_token)
        assert record.tokens.expires_at is not None  # from the provider's answer: on schedule from now on
    finally:
        await c.aclose()


async def test_a_secret_stored_as_null_is_not_imported_as_the_string_none(
    tmp_path: Path, seed: SeedDeployment, idp: FakeOAuthProvider, etcd_endpoint: tuple[str, int], mongo_url: str
) -> None:
    org = await seed.org(account_type="individual")
    alice = await seed.user(org, "alice@edge.example")
    await seed.put_encrypted(
        f"/services/connectors/onedrive/config/{org}",
        {"clientId": "od-client", "clientSecret": None, "tenantId": "contoso", "hasAdminConsent": True},
    )
    await seed.connector_doc(org, "OneDrive", enabled=False, by=alice)
    await seed.google_oauth_config("edge-google-client", None)  # type: ignore[arg-type]  # null there too

    done, _ = await do_import(tmp_path, seed, etcd_endpoint, mongo_url)
    assert done.report.of(ImportOutcome.FAILED) == [], done.report
    c = await container(tmp_path, idp)
    try:
        stored = await c.infrastructure.secrets.list_prefix("/services/connectors/")
        opened = {path: await c.secrets_store.get(path) for path in stored}
        assert all(v is not None and "None" not in v.value for v in opened.values()), opened
        view = await c.connectors.get(str(org), "onedrive")
        assert view.connector.config.auth.get("clientId") == "od-client"
        assert "auth.clientSecret" not in view.connector.config.secrets_set
    finally:
        await c.aclose()


@pytest.mark.parametrize("person_commits", [True, False], ids=["saved", "secrets-written-not-yet-committed"])
async def test_a_person_saving_the_same_connector_during_the_import_is_never_overwritten(
    tmp_path: Path,
    seed: SeedDeployment,
    idp: FakeOAuthProvider,
    etcd_endpoint: tuple[str, int],
    mongo_url: str,
    monkeypatch: pytest.MonkeyPatch,
    person_commits: bool,
) -> None:
    org = await seed.org(account_type="individual")
    alice = await seed.user(org, "alice@edge.example")
    await seed.onedrive_config(org, client_id="old-client", client_secret="OLD-SECRET", tenant="contoso")
    await seed.connector_doc(org, "OneDrive", enabled=True, by=alice)
    person = ConfigUpdate(
        base_url="",
        auth={"clientId": "new-client", "clientSecret": "NEW-SECRET", "tenantId": "fabrikam"},
        sync={},
        filters={},
    )
    store = ConnectorImport._store

    async def person_saves_first(self: ConnectorImport, entry: Any, connector: Any, *args: Any) -> None:
        # between the import's "is it here?" and its writes, a person saves the same connector
        if connector.key == "onedrive":
            if person_commits:
                c = await container(tmp_path, idp)
                try:
                    await c.connectors.update_configuration(connector.org_id, "bob", "onedrive", person)
                finally:
                    await c.aclose()
            else:  # a save whose secrets are written and whose commit is still to come
                await self.ctx.secrets.put(
                    secret_path("onedrive", connector.org_id),
                    '{"auth.clientSecret": "NEW-SECRET"}',
                    expected_revision=0,
                )
        await store(self, entry, connector, *args)

    monkeypatch.setattr(ConnectorImport, "_store", person_saves_first)
    done, _ = await do_import(tmp_path, seed, etcd_endpoint, mongo_url)
    skipped = [r for r in done.report.of(ImportOutcome.SKIPPED) if r.item.startswith("onedrive")]
    assert len(skipped) == 1 and "never overwritten" in str(skipped[0].reason), done.report

    c = await container(tmp_path, idp)
    try:
        secret = await c.secrets_store.get(secret_path("onedrive", str(org)))
        assert secret is not None and json.loads(secret.value) == {"auth.clientSecret": "NEW-SECRET"}
        view = await c.connectors.get(str(org), "onedrive")
        if person_commits:
            assert view.connector.config.auth.get("clientId") == "new-client"
        else:
            assert view.connector.is_new  # the import created nothing under the person's save
    finally:
        await c.aclose()
