"""``connector-manager import``'s use case on the real etcd and MongoDB servers: the existing
deployment laid down exactly as it stores it (tests/fakes/pipeshub.py), imported into this one.
Every connector, client configuration, individual and business credential and enabled state is
mapped; values are re-encrypted under our keyring, bound to their path; the source never
changes; a second run changes nothing; a dry run writes nothing; an imported Google token
refreshes against the test OAuth provider with the imported refresh token, rotation stored."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from attrs import frozen
from bson import ObjectId

from connector_core.errors import CryptoError
from connector_core.model.connector import AuthState
from connector_core.services.importing import ImportOutcome, ImportReport, ImportResult
from connector_core.tokens import TokenStatus
from entrypoints.bootstrap import Container, build_container
from entrypoints.importer import ImportRun, run_import, source_settings
from entrypoints.settings import Settings, SettingsError, load_settings
from tests.cli import clean_env, run_cli
from tests.fakes.oauth_provider import FakeOAuthProvider
from tests.fakes.pipeshub import INDIVIDUAL, SECRET_KEY, SeedDeployment, seal, seed_deployment
from tests.integration.test_oauth_http_flows import pointed_at

pytestmark = [pytest.mark.etcd, pytest.mark.mongo]

Doc = dict[str, Any]
TOPIC = "projects/acme/topics/gmail"
ENV = {"CM_MASTER_KEY": "import-tests-master-key", "CM_LEGACY_SECRET_KEY": SECRET_KEY}


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeOAuthProvider]:
    with FakeOAuthProvider(rotate_refresh_tokens=True) as provider:
        yield provider


@pytest.fixture
async def seed(etcd_endpoint: tuple[str, int], mongo_url: str) -> AsyncIterator[SeedDeployment]:
    async with seed_deployment(etcd_endpoint, mongo_url, namespace=f"/seed-{uuid.uuid4().hex[:8]}") as deployment:
        yield deployment


@frozen
class Layout:
    individual_org: ObjectId
    alice: ObjectId
    bob: ObjectId
    business_org: ObjectId
    refresh_token: str


async def lay_down(seed: SeedDeployment, idp: FakeOAuthProvider) -> Layout:
    """One individual org (Alice and Bob, Alice consented; OneDrive, SharePoint, Atlassian too),
    one business org (a service account), and what the import cannot use."""
    idp.register_client("seed-google-client", "seed-google-secret")
    refresh = idp.mint_refresh_token(
        "seed-google-client", ["openid", "email", "https://www.googleapis.com/auth/drive.readonly"]
    )
    individual = await seed.org(account_type="individual")
    business = await seed.org(account_type="business", domain="biz.example")
    alice = await seed.user(individual, "alice@acme.example")
    bob = await seed.user(individual, "bob@acme.example")
    biz_admin = await seed.user(business, "admin@biz.example")
    await seed.group(individual, "admin", [alice])
    await seed.group(business, "admin", [biz_admin])
    await seed.secret_keys()
    await seed.endpoints("https://app.acme.example", "http://cm.acme.internal:3000")
    await seed.google_oauth_config("seed-google-client", "seed-google-secret", real_time=True, topic=TOPIC)
    expired = int((time.time() - 60) * 1000)  # refreshed at the first chance
    await seed.google_individual_credentials(
        alice, access_token="SEED-ACCESS-ALICE", refresh_token=refresh, expiry_ms=expired, real_time=True, topic=TOPIC
    )
    await seed.google_individual_credentials(
        bob, access_token="SEED-ACCESS-BOB", refresh_token="SEED-REFRESH-BOB", expiry_ms=expired
    )
    await seed.connector_doc(individual, "Google Workspace", enabled=True, by=alice)
    await seed.google_business_credentials(business, admin_email="admin@biz.example")
    await seed.connector_doc(business, "Google Workspace", enabled=True, by=biz_admin)
    await seed.onedrive_config(individual, client_id="od-client", client_secret="od-secret", tenant="contoso")
    await seed.connector_doc(individual, "OneDrive", enabled=True, by=alice)
    await seed.sharepoint_config(
        individual, client_id="sp-client", client_secret="sp-secret", tenant="contoso", domain="contoso.sharepoint.com"
    )
    await seed.atlassian_config(individual, client_id="at-client", client_secret="at-secret")
    await seed.connector_doc(individual, "Atlassian", enabled=False, by=alice)
    await seed.connector_doc(individual, "Slack", enabled=True, by=alice)  # nothing to import with it
    # what its Python connector service wrote for the whole deployment, and a value under another key
    await seed.put_encrypted("/services/connectors/drive/config", {"auth": {"clientId": "x"}, "credentials": {}})
    await seed.etcd.put(
        f"{seed.namespace}/services/connectors/onedrive/config/{business}".encode(),
        seal(json.dumps({"clientId": "c", "clientSecret": "s"}), "ANOTHER-SECRET-KEY").encode(),
    )
    return Layout(individual, alice, bob, business, refresh)


def target_settings(tmp_path: Path) -> Settings:
    return load_settings(env={}, storage="sqlite", secrets="sqlite", data_dir=tmp_path / "cm", run_refresher=False)


async def do_import(
    tmp_path: Path, seed: SeedDeployment, etcd_endpoint: tuple[str, int], mongo_url: str, *, dry_run: bool = False
) -> tuple[ImportRun, list[tuple[int, int, ImportResult]]]:
    settings = target_settings(tmp_path)
    source = source_settings(
        settings,
        ENV,
        etcd_endpoint=f"{etcd_endpoint[0]}:{etcd_endpoint[1]}",
        etcd_namespace=seed.namespace,
        mongo_url=mongo_url,
        mongo_database=seed.db.name,
    )
    seen: list[tuple[int, int, ImportResult]] = []
    done = await run_import(settings, ENV, source, dry_run=dry_run, progress=lambda d, t, r: seen.append((d, t, r)))
    return done, seen


async def container(tmp_path: Path, idp: FakeOAuthProvider) -> Container:
    return await build_container(target_settings(tmp_path), env=ENV, catalog=pointed_at(idp))


def by_item(report: ImportReport) -> dict[str, ImportResult]:
    return {r.item: r for r in report.results}


def outcomes(report: ImportReport) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for r in report.results:
        found.setdefault(str(r.outcome), []).append(r.item)
    return found


async def test_everything_is_mapped_re_encrypted_and_the_source_left_alone(
    tmp_path: Path, seed: SeedDeployment, idp: FakeOAuthProvider, etcd_endpoint: tuple[str, int], mongo_url: str
) -> None:
    lay = await lay_down(seed, idp)
    etcd_before, mongo_before = await seed.snapshot(), await seed.mongo_snapshot()
    done, progress = await do_import(tmp_path, seed, etcd_endpoint, mongo_url)
    report = done.report
    org, biz = str(lay.individual_org), str(lay.business_org)

    imported = sorted(r.item.split(" (from")[0] for r in report.of(ImportOutcome.IMPORTED))
    assert imported == sorted(
        [
            "/services/secretKeys (the API's signing secrets)",
            f"googleWorkspace of org {org}",
            f"googleWorkspace of org {biz}",
            f"onedrive of org {org}",
            f"sharepointOnline of org {org}",
            f"confluence of org {org}",
            f"jira of org {org}",
        ]
    )
    failed = {r.item: r.reason for r in report.of(ImportOutcome.FAILED)}
    bad_key = f"{seed.namespace}/services/connectors/onedrive/config/{biz}".removeprefix(seed.namespace)
    assert set(failed) == {bad_key} and "authentication failed" in str(failed[bad_key])
    skipped = {r.item: r.reason for r in report.of(ImportOutcome.SKIPPED)}
    assert "/services/connectors/drive/config" in skipped
    assert f"connectorsConfig Slack of org {org}" in skipped
    assert f"{INDIVIDUAL}/{lay.bob}" in skipped  # one Google Workspace token per org here: Alice's
    assert "user " + str(lay.alice) in str(skipped[f"{INDIVIDUAL}/{lay.bob}"])
    assert [(d, t) for d, t, _ in progress] == [(i, len(report.results)) for i in range(1, len(report.results) + 1)]
    assert done.frontend_url_hint == "https://app.acme.example"
    text = repr(report)
    for secret in ("seed-google-secret", "SEED-ACCESS-ALICE", lay.refresh_token, "od-secret", "PLANTED-SA-KEY"):
        assert secret not in text

    # the source: not one byte changed, nothing added
    assert await seed.snapshot() == etcd_before
    assert await seed.mongo_snapshot() == mongo_before

    c = await container(tmp_path, idp)
    try:
        assert c.service_secrets.jwt_secret == seed.jwt_secret  # its tokens are accepted here
        google = (await c.connectors.get(org, "googleWorkspace")).connector
        assert google.is_enabled and google.auth_status.state == AuthState.AUTHENTICATED
        assert dict(google.config.auth) == {
            "authType": "OAUTH",
            "clientId": "seed-google-client",
            "enableRealTimeUpdates": True,
            "topicName": TOPIC,
        }
        assert google.config.secrets_set == {"auth.clientSecret"}
        assert google.last_updated_by == str(lay.alice)
        async with c.ctx.uow() as uow:
            record = await uow.tokens.get_for_connector(org, "googleWorkspace")
        assert record is not None and record.status == TokenStatus.ACTIVE
        assert record.account_id == str(lay.alice)
        assert record.tokens.access_token == "SEED-ACCESS-ALICE" and record.tokens.refresh_token == lay.refresh_token

        path = f"/services/connectors/googleWorkspace/config/{org}"
        stored = await c.infrastructure.secrets.get(path)  # as written: our envelope, bound to its path
        assert stored is not None and stored.value.startswith("v1:")
        assert json.loads((await c.secrets_store.get(path)).value) == {"auth.clientSecret": "seed-google-secret"}  # type: ignore[union-attr]
        await c.infrastructure.secrets.put(path + "-copy", stored.value)
        with pytest.raises(CryptoError):
            await c.secrets_store.get(path + "-copy")

        business = (await c.connectors.get(biz, "googleWorkspace")).connector
        assert business.auth_type == "SERVICE_ACCOUNT" and business.is_enabled
        assert dict(business.config.auth)["adminEmail"] == "admin@biz.example"
        account = json.loads((await c.secrets_store.get(f"/services/connectors/googleWorkspace/config/{biz}")).value)  # type: ignore[union-attr]
        assert json.loads(account["auth.serviceAccountJson"])["private_key"].startswith("-----BEGIN PRIVATE KEY-----")

        onedrive = (await c.connectors.get(org, "onedrive")).connector
        assert dict(onedrive.config.auth) == {
            "authType": "OAUTH",
            "clientId": "od-client",
            "tenantId": "contoso",
            "hasAdminConsent": True,
        }
        assert not onedrive.is_enabled  # enabled there, but it needs an authorization here
        assert any(
            "not enabled here" in n
            for n in by_item(report)[f"onedrive of org {org} (from /services/connectors/onedrive/config/{org})"].notes
        )
        sharepoint = (await c.connectors.get(org, "sharepointOnline")).connector
        assert dict(sharepoint.config.auth)["sharepointDomain"] == "contoso.sharepoint.com"
        for key in ("confluence", "jira"):
            atlassian = (await c.connectors.get(org, key)).connector
            assert dict(atlassian.config.auth)["clientId"] == "at-client" and not atlassian.is_enabled

        events = [m.event for m in await c.storage.outbox.recent(1000)]
        kinds = [(e.event_type, e.connector_key) for e in events if e.org_id == org]
        assert ("appEnabled", "googleWorkspace") in kinds
        assert not any(t == "connectorRealTimeUpdatesChanged" for t, _ in kinds)  # not news to its consumers
        enabled = next(e for e in events if e.event_type == "appEnabled" and e.org_id == org)
        assert enabled.sync_action == "none"  # type: ignore[attr-defined]
    finally:
        await c.aclose()


async def test_a_second_run_changes_nothing(
    tmp_path: Path, seed: SeedDeployment, idp: FakeOAuthProvider, etcd_endpoint: tuple[str, int], mongo_url: str
) -> None:
    org = str((await lay_down(seed, idp)).individual_org)
    await do_import(tmp_path, seed, etcd_endpoint, mongo_url)
    c = await container(tmp_path, idp)
    try:
        before = [(v.connector.key, v.connector.version) for v in await c.connectors.list(org)]
        events_before = len(await c.storage.outbox.recent(10_000))
        secrets_before = await c.infrastructure.secrets.list_prefix("/services/")
    finally:
        await c.aclose()
    again, _ = await do_import(tmp_path, seed, etcd_endpoint, mongo_url)
    assert again.report.of(ImportOutcome.IMPORTED) == []
    reasons = {r.reason for r in again.report.of(ImportOutcome.SKIPPED)}
    assert "already here (imported before, or configured in this service); never overwritten" in reasons
    assert "already here (imported before)" in reasons  # the signing secrets
    c = await container(tmp_path, idp)
    try:
        after = [(v.connector.key, v.connector.version) for v in await c.connectors.list(org)]
        assert after == before
        assert len(await c.storage.outbox.recent(10_000)) == events_before
        assert await c.infrastructure.secrets.list_prefix("/services/") == secrets_before
    finally:
        await c.aclose()


async def test_a_dry_run_reports_and_writes_nothing(
    tmp_path: Path, seed: SeedDeployment, idp: FakeOAuthProvider, etcd_endpoint: tuple[str, int], mongo_url: str
) -> None:
    lay = await lay_down(seed, idp)
    dry, _ = await do_import(tmp_path, seed, etcd_endpoint, mongo_url, dry_run=True)
    would = sorted(r.item.split(" (from")[0] for r in dry.report.of(ImportOutcome.WOULD_IMPORT))
    assert f"googleWorkspace of org {lay.individual_org}" in would and len(would) == 7
    assert dry.report.of(ImportOutcome.IMPORTED) == []
    c = await container(tmp_path, idp)
    try:
        assert await c.storage.outbox.recent(100) == []
        assert all(v.connector.is_new for v in await c.connectors.list(str(lay.individual_org)))
        assert c.service_secrets.jwt_secret != seed.jwt_secret  # this start generated its own: nothing imported
    finally:
        await c.aclose()
    real, _ = await do_import(tmp_path, seed, etcd_endpoint, mongo_url)
    assert sorted(r.item.split(" (from")[0] for r in real.report.of(ImportOutcome.IMPORTED)) == [
        w for w in would if not w.startswith("/services/secretKeys")
    ]
    keys = by_item(real.report)["/services/secretKeys (the API's signing secrets)"]
    assert keys.outcome == ImportOutcome.FAILED and "CM_JWT_SECRET" in str(keys.reason)


async def test_an_imported_google_token_refreshes_with_its_refresh_token_and_keeps_the_rotation(
    tmp_path: Path, seed: SeedDeployment, idp: FakeOAuthProvider, etcd_endpoint: tuple[str, int], mongo_url: str
) -> None:
    lay = await lay_down(seed, idp)
    await do_import(tmp_path, seed, etcd_endpoint, mongo_url)
    org = str(lay.individual_org)
    c = await container(tmp_path, idp)
    try:
        grants = idp.stats()["refresh_grants"]
        report = await c.refresher.refresh_due(batch_size=100)  # expired there, so due at once
        assert report.refreshed == 1, report
        assert idp.stats()["refresh_grants"] == grants + 1
        async with c.ctx.uow() as uow:
            record = await uow.tokens.get_for_connector(org, "googleWorkspace")
        assert record is not None
        assert idp.is_access_token_valid(record.tokens.access_token)
        rotated = record.tokens.refresh_token
        assert rotated is not None and rotated != lay.refresh_token  # the provider rotated it: stored
        assert not idp.is_refresh_token_valid(lay.refresh_token)
        again = await c.refresher.refresh_connector(org, "googleWorkspace")
        assert idp.is_access_token_valid(again.tokens.access_token) and again.tokens.refresh_token != rotated
    finally:
        await c.aclose()


async def test_the_import_never_writes_into_the_source(
    tmp_path: Path, seed: SeedDeployment, etcd_endpoint: tuple[str, int], mongo_url: str
) -> None:
    settings = load_settings(
        env={},
        storage="sqlite",
        secrets="etcd",
        etcd_endpoint=f"{etcd_endpoint[0]}:{etcd_endpoint[1]}",
        etcd_namespace=seed.namespace,
        data_dir=tmp_path,
    )
    source = source_settings(
        settings, ENV, etcd_endpoint=None, etcd_namespace=seed.namespace, mongo_url=mongo_url, mongo_database="es"
    )
    with pytest.raises(SettingsError) as refused:
        await run_import(settings, ENV, source, dry_run=False)
    assert refused.value.errors[0]["path"] == "etcd_namespace"


def test_the_existing_services_secret_key_is_required(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as missing:
        source_settings(
            target_settings(tmp_path), {}, etcd_endpoint=None, etcd_namespace="", mongo_url=None, mongo_database=None
        )
    assert missing.value.errors[0]["path"] == "CM_LEGACY_SECRET_KEY"


def test_the_command_names_what_is_missing_in_one_line(tmp_path: Path) -> None:
    done = run_cli("import", "--data-dir", str(tmp_path), env=clean_env(CM_MASTER_KEY="k"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "connector-manager: CM_LEGACY_SECRET_KEY: set it to the existing service's SECRET_KEY"
    ]
