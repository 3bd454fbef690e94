"""``connector-manager import`` where the existing deployment's data holds what the mapping did not
foresee, on the real etcd and MongoDB servers (the data laid down by tests/fakes/pipeshub.py):
every key read is imported or reported (never dropped in silence), and one bad record fails
alone, named, never quoted, while the rest is imported."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from adapters.pipeshub.source import PipesHubSource
from connector_core.services.importing import ImportOutcome, ImportReport
from tests.cli import clean_env, run_cli
from tests.fakes.oauth_provider import FakeOAuthProvider
from tests.fakes.pipeshub import BUSINESS, GOOGLE_CONFIG, INDIVIDUAL, SECRET_KEY, SeedDeployment, seal
from tests.integration.test_import_pipeshub import container, do_import, idp, seed

pytestmark = [pytest.mark.etcd, pytest.mark.mongo]

__all__ = ["idp", "seed"]  # the fixtures, shared with the main import tests

AN_HOUR_AHEAD_MS = int((time.time() + 3600) * 1000)


def reasons(report: ImportReport, outcome: ImportOutcome) -> dict[str, str]:
    return {r.item: str(r.reason) for r in report.of(outcome)}


def accounted_for(report: ImportReport, keys: list[str]) -> list[str]:
    """The keys the report names nowhere (neither as an item nor as where an item came from)."""
    named = {r.item for r in report.results}
    for r in report.results:
        if " (from " in r.item:
            named |= set(r.item.split(" (from ")[1].removesuffix(")").split(", "))
    return [k for k in keys if k not in named]


@pytest.mark.parametrize("with_service_account", [False, True], ids=["accountType-only", "service-account"])
async def test_individual_credentials_in_a_business_org_are_reported_not_dropped(
    tmp_path: Path,
    seed: SeedDeployment,
    etcd_endpoint: tuple[str, int],
    mongo_url: str,
    with_service_account: bool,
) -> None:
    org = await seed.org(account_type="business")
    alice = await seed.user(org, "alice@biz.example")
    await seed.google_oauth_config("gaps-google-client", "GAPS-GOOGLE-SECRET")
    await seed.google_individual_credentials(
        alice, access_token="GAPS-ACCESS", refresh_token="GAPS-REFRESH", expiry_ms=AN_HOUR_AHEAD_MS
    )
    await seed.connector_doc(org, "Google Workspace", enabled=True, by=alice)
    if with_service_account:
        await seed.google_business_credentials(org, admin_email="alice@biz.example")

    done, _ = await do_import(tmp_path, seed, etcd_endpoint, mongo_url)
    skipped = reasons(done.report, ImportOutcome.SKIPPED)
    assert f"{INDIVIDUAL}/{alice}" in skipped, done.report
    assert "business org" in skipped[f"{INDIVIDUAL}/{alice}"]
    # the deployment's OAuth client: no individual org here uses it, and the report says so
    assert "no individual org" in skipped[GOOGLE_CONFIG]
    keys = [GOOGLE_CONFIG, f"{INDIVIDUAL}/{alice}"] + ([f"{BUSINESS}/{org}"] if with_service_account else [])
    assert accounted_for(done.report, keys) == []
    text = repr(done.report)
    assert not any(s in text for s in ("GAPS-ACCESS", "GAPS-REFRESH", "GAPS-GOOGLE-SECRET", "PLANTED-SA-KEY"))


@pytest.mark.parametrize(
    "expiry",
    ["100000000000000000000", "1e999", "NaN", '"tomorrow"'],
    ids=["beyond-the-clock", "infinite", "nan", "text"],
)
async def test_an_expiry_that_is_no_time_fails_that_token_alone(
    tmp_path: Path,
    seed: SeedDeployment,
    idp: FakeOAuthProvider,
    etcd_endpoint: tuple[str, int],
    mongo_url: str,
    expiry: str,
) -> None:
    org = await seed.org(account_type="individual")
    alice = await seed.user(org, "alice@acme.example")
    other_org = await seed.org(account_type="individual")
    bob = await seed.user(other_org, "bob@acme.example")
    await seed.google_oauth_config("gaps-google-client", "GAPS-GOOGLE-SECRET")
    await seed.etcd.put(
        f"{seed.namespace}{INDIVIDUAL}/{alice}".encode(),
        seal(
            '{"access_token":"GAPS-ACCESS","refresh_token":"GAPS-REFRESH","access_token_expiry_time":' + expiry + "}",
            seed.secret_key,
        ).encode(),
    )
    await seed.connector_doc(org, "Google Workspace", enabled=True, by=alice)
    await seed.google_individual_credentials(
        bob, access_token="GAPS-ACCESS-BOB", refresh_token="GAPS-REFRESH-BOB", expiry_ms=AN_HOUR_AHEAD_MS
    )
    await seed.connector_doc(other_org, "Google Workspace", enabled=True, by=bob)
    await seed.onedrive_config(org, client_id="od-client", client_secret="GAPS-OD-SECRET", tenant="contoso")

    done, _ = await do_import(tmp_path, seed, etcd_endpoint, mongo_url)  # never aborts the whole import
    failed = reasons(done.report, ImportOutcome.FAILED)
    assert "access_token_expiry_time" in failed[f"{INDIVIDUAL}/{alice}"], done.report
    imported = {r.item.split(" (from")[0] for r in done.report.of(ImportOutcome.IMPORTED)}
    assert {f"googleWorkspace of org {other_org}", f"onedrive of org {org}"} <= imported
    text = repr(done.report)
    assert not any(s in text for s in ("GAPS-ACCESS", "GAPS-REFRESH", "GAPS-GOOGLE-SECRET", "GAPS-OD-SECRET"))
    c = await container(tmp_path, idp)
    try:
        async with c.ctx.uow() as uow:
            assert await uow.tokens.get_for_connector(str(org), "googleWorkspace") is None
            found = await uow.tokens.get_for_connector(str(other_org), "googleWorkspace")
        assert found is not None and found.account_id == str(bob)
    finally:
        await c.aclose()


async def test_a_value_nested_too_deeply_fails_alone(
    tmp_path: Path, seed: SeedDeployment, etcd_endpoint: tuple[str, int], mongo_url: str
) -> None:
    org = await seed.org(account_type="individual")
    alice = await seed.user(org, "alice@acme.example")
    deep = '{"clientId":"c","clientSecret":"GAPS-DEEP-SECRET","tenantId":' + "[" * 100_000 + "]" * 100_000 + "}"
    await seed.etcd.put(
        f"{seed.namespace}/services/connectors/sharepoint/config/{org}".encode(), seal(deep, seed.secret_key).encode()
    )
    await seed.onedrive_config(org, client_id="od-client", client_secret="GAPS-OD-SECRET", tenant="contoso")
    await seed.connector_doc(org, "OneDrive", enabled=True, by=alice)

    done, _ = await do_import(tmp_path, seed, etcd_endpoint, mongo_url)
    failed = reasons(done.report, ImportOutcome.FAILED)
    assert "RecursionError" in failed[f"/services/connectors/sharepoint/config/{org}"], done.report
    imported = {r.item.split(" (from")[0] for r in done.report.of(ImportOutcome.IMPORTED)}
    assert f"onedrive of org {org}" in imported
    assert "GAPS-DEEP-SECRET" not in repr(done.report)


async def test_an_unforeseen_error_fails_that_connector_alone_named_by_its_class(
    tmp_path: Path,
    seed: SeedDeployment,
    etcd_endpoint: tuple[str, int],
    mongo_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    org = await seed.org(account_type="individual")
    alice = await seed.user(org, "alice@acme.example")
    await seed.onedrive_config(org, client_id="od-client", client_secret="GAPS-OD-SECRET", tenant="contoso")
    await seed.atlassian_config(org, client_id="at-client", client_secret="GAPS-AT-SECRET")
    await seed.connector_doc(org, "OneDrive", enabled=True, by=alice)
    client_config = PipesHubSource._client_config

    def breaks_on_onedrive(self: PipesHubSource, r: object, org_id: str, app: str, *args: object) -> object:
        if app == "onedrive":
            raise RuntimeError("a message quoting GAPS-OD-SECRET")
        return client_config(self, r, org_id, app, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(PipesHubSource, "_client_config", breaks_on_onedrive)
    done, _ = await do_import(tmp_path, seed, etcd_endpoint, mongo_url)
    failed = reasons(done.report, ImportOutcome.FAILED)
    assert "RuntimeError" in failed[f"OneDrive of org {org}"], done.report
    imported = {r.item.split(" (from")[0] for r in done.report.of(ImportOutcome.IMPORTED)}
    assert {f"confluence of org {org}", f"jira of org {org}"} <= imported
    assert "GAPS-OD-SECRET" not in repr(done.report)


async def test_a_consenting_users_refresh_token_without_an_access_token_is_imported_and_refreshed(
    tmp_path: Path, seed: SeedDeployment, idp: FakeOAuthProvider, etcd_endpoint: tuple[str, int], mongo_url: str
) -> None:
    idp.register_client("gaps-google-client", "GAPS-GOOGLE-SECRET")
    refresh = idp.mint_refresh_token("gaps-google-client", ["openid", "email"])
    org = await seed.org(account_type="individual")
    alice = await seed.user(org, "alice@acme.example")
    bob = await seed.user(org, "bob@acme.example")
    await seed.google_oauth_config("gaps-google-client", "GAPS-GOOGLE-SECRET")
    await seed.put_encrypted(
        f"{INDIVIDUAL}/{alice}", {"access_token": "", "refresh_token": refresh, "access_token_expiry_time": 1}
    )
    await seed.google_individual_credentials(
        bob, access_token="GAPS-ACCESS-BOB", refresh_token="GAPS-REFRESH-BOB", expiry_ms=AN_HOUR_AHEAD_MS
    )
    await seed.connector_doc(org, "Google Workspace", enabled=True, by=alice)

    done, _ = await do_import(tmp_path, seed, etcd_endpoint, mongo_url)
    assert reasons(done.report, ImportOutcome.FAILED) == {}, done.report
    skipped = reasons(done.report, ImportOutcome.SKIPPED)
    assert f"user {alice}'s is imported" in skipped[f"{INDIVIDUAL}/{bob}"]
    (google,) = [r for r in done.report.of(ImportOutcome.IMPORTED) if r.item.startswith("googleWorkspace")]
    assert f"{INDIVIDUAL}/{alice}" in google.item
    assert any("refreshed at the first chance" in n for n in google.notes), google.notes
    assert not any(s in repr(done.report) for s in (refresh, "GAPS-ACCESS-BOB", "GAPS-REFRESH-BOB"))

    c = await container(tmp_path, idp)
    try:
        assert (await c.refresher.refresh_due(batch_size=100)).refreshed == 1
        async with c.ctx.uow() as uow:
            record = await uow.tokens.get_for_connector(str(org), "googleWorkspace")
        assert record is not None and record.account_id == str(alice)
        assert idp.is_access_token_valid(record.tokens.access_token)
    finally:
        await c.aclose()


async def test_when_the_consenting_users_token_is_unusable_another_users_is_imported_and_said_so(
    tmp_path: Path, seed: SeedDeployment, idp: FakeOAuthProvider, etcd_endpoint: tuple[str, int], mongo_url: str
) -> None:
    org = await seed.org(account_type="individual")
    alice = await seed.user(org, "alice@acme.example")
    bob = await seed.user(org, "bob@acme.example")
    await seed.google_oauth_config("gaps-google-client", "GAPS-GOOGLE-SECRET")
    await seed.put_encrypted(f"{INDIVIDUAL}/{alice}", {"access_token": "", "refresh_token": ""})
    await seed.google_individual_credentials(
        bob, access_token="GAPS-ACCESS-BOB", refresh_token="GAPS-REFRESH-BOB", expiry_ms=AN_HOUR_AHEAD_MS
    )
    await seed.connector_doc(org, "Google Workspace", enabled=True, by=alice)

    done, _ = await do_import(tmp_path, seed, etcd_endpoint, mongo_url)
    assert (
        "neither an access token nor a refresh token"
        in reasons(done.report, ImportOutcome.FAILED)[f"{INDIVIDUAL}/{alice}"]
    )
    assert not any(f"user {alice}'s is imported" in str(r.reason) for r in done.report.results), done.report
    (google,) = [r for r in done.report.of(ImportOutcome.IMPORTED) if r.item.startswith("googleWorkspace")]
    assert f"{INDIVIDUAL}/{bob}" in google.item
    assert any(f"user {bob}'s is imported" in n for n in google.notes), google.notes
    c = await container(tmp_path, idp)
    try:
        async with c.ctx.uow() as uow:
            record = await uow.tokens.get_for_connector(str(org), "googleWorkspace")
        assert record is not None and record.account_id == str(bob)
        assert record.tokens.access_token == "GAPS-ACCESS-BOB"
    finally:
        await c.aclose()
    again, _ = await do_import(tmp_path, seed, etcd_endpoint, mongo_url)  # a second run changes nothing
    assert again.report.of(ImportOutcome.IMPORTED) == []


async def test_imported_configurations_get_the_checks_a_configuration_save_gets(
    tmp_path: Path, seed: SeedDeployment, idp: FakeOAuthProvider, etcd_endpoint: tuple[str, int], mongo_url: str
) -> None:
    org = await seed.org(account_type="individual")
    alice = await seed.user(org, "alice@acme.example")
    business = await seed.org(account_type="business")
    admin = await seed.user(business, "admin@biz.example")
    fine = await seed.org(account_type="individual")
    await seed.put_encrypted(
        f"/services/connectors/onedrive/config/{org}",
        {"clientId": {"x": 1}, "clientSecret": ["GAPS-LIST-SECRET"], "tenantId": 12, "hasAdminConsent": "yes"},
    )
    await seed.connector_doc(org, "OneDrive", enabled=True, by=alice)
    await seed.put_encrypted(
        f"/services/connectors/sharepoint/config/{org}",
        {"clientId": "c" * 100_000, "clientSecret": "GAPS-SP-SECRET", "tenantId": "contoso"},
    )
    await seed.etcd.put(
        f"{seed.namespace}/services/connectors/atlassian/config/{org}".encode(),
        seal('{"clientId":"c","clientSecret":"GAPS-SURROGATE\\ud800"}', seed.secret_key).encode(),
    )
    await seed.google_oauth_config("gaps-google-client", ["GAPS-GOOGLE-LIST"])  # type: ignore[arg-type]
    await seed.put_encrypted(f"{BUSINESS}/{business}", {"adminEmail": 5, "private_key": "GAPS-PRIVATE-KEY"})
    await seed.connector_doc(business, "Google Workspace", enabled=True, by=admin)
    await seed.onedrive_config(fine, client_id="od-client", client_secret="GAPS-FINE-SECRET", tenant="contoso")

    done, _ = await do_import(tmp_path, seed, etcd_endpoint, mongo_url)
    failed = {r.item.split(" (from")[0]: str(r.reason) for r in done.report.of(ImportOutcome.FAILED)}
    onedrive = failed[f"onedrive of org {org}"]
    for path in ("auth.clientId", "auth.clientSecret", "auth.tenantId", "auth.hasAdminConsent"):
        assert path in onedrive, onedrive
    assert "auth.clientId must be at most" in failed[f"sharepointOnline of org {org}"]
    for key in ("confluence", "jira"):
        assert "auth.clientSecret is not valid Unicode text" in failed[f"{key} of org {org}"]
    assert "auth.clientSecret must be of type string" in failed[f"googleWorkspace of org {org}"]
    service_account = failed[f"{BUSINESS}/{business}"]
    assert "client_email" in service_account and "private_key_id" in service_account, service_account
    assert f"googleWorkspace of org {business}" not in failed  # failed at its key, never made
    imported = {r.item.split(" (from")[0] for r in done.report.of(ImportOutcome.IMPORTED)}
    assert f"onedrive of org {fine}" in imported  # the rest is imported
    text = repr(done.report)
    planted = ("GAPS-LIST-SECRET", "GAPS-SP-SECRET", "GAPS-SURROGATE", "GAPS-GOOGLE-LIST", "GAPS-PRIVATE-KEY")
    assert not any(s in text for s in (*planted, "GAPS-FINE-SECRET", "c" * 100)), text

    c = await container(tmp_path, idp)
    try:
        stored = await c.infrastructure.secrets.list_prefix("/services/connectors/")
        assert list(stored) == [f"/services/connectors/onedrive/config/{fine}"], stored
        for key in ("onedrive", "sharepointOnline", "confluence", "jira", "googleWorkspace"):
            assert (await c.connectors.get(str(org), key)).connector.is_new
        assert (await c.connectors.get(str(business), "googleWorkspace")).connector.is_new
    finally:
        await c.aclose()
    again, _ = await do_import(tmp_path, seed, etcd_endpoint, mongo_url)  # the same report, nothing written
    assert {r.item for r in again.report.of(ImportOutcome.FAILED)} == {
        r.item for r in done.report.of(ImportOutcome.FAILED)
    }


async def test_the_commands_output_and_logs_quote_no_secret_of_these_records(
    tmp_path: Path, seed: SeedDeployment, etcd_endpoint: tuple[str, int], mongo_url: str
) -> None:
    individual = await seed.org(account_type="individual")
    alice = await seed.user(individual, "alice@acme.example")
    bob = await seed.user(individual, "bob@acme.example")
    business = await seed.org(account_type="business")
    carol = await seed.user(business, "carol@biz.example")
    await seed.secret_keys()
    await seed.google_oauth_config("gaps-google-client", "GAPS-GOOGLE-SECRET")
    await seed.put_encrypted(f"{INDIVIDUAL}/{alice}", {"access_token": "", "refresh_token": "GAPS-REFRESH-ALICE"})
    await seed.google_individual_credentials(
        bob, access_token="GAPS-ACCESS-BOB", refresh_token="GAPS-REFRESH-BOB", expiry_ms=10**20
    )
    await seed.connector_doc(individual, "Google Workspace", enabled=True, by=bob)
    await seed.google_individual_credentials(
        carol, access_token="GAPS-ACCESS-CAROL", refresh_token="GAPS-REFRESH-CAROL", expiry_ms=AN_HOUR_AHEAD_MS
    )
    await seed.put_encrypted(f"{BUSINESS}/{business}", {"adminEmail": "x@biz.example", "private_key": "GAPS-PK"})
    await seed.put_encrypted(
        f"/services/connectors/onedrive/config/{individual}",
        {"clientId": "od", "clientSecret": ["GAPS-LIST-SECRET"], "tenantId": "contoso"},
    )

    done = run_cli(
        "import",
        "--data-dir",
        str(tmp_path / "cli"),
        "--from-etcd",
        f"{etcd_endpoint[0]}:{etcd_endpoint[1]}",
        "--from-etcd-namespace",
        seed.namespace,
        "--from-mongo-url",
        mongo_url,
        "--from-mongo-database",
        seed.db.name,
        env=clean_env(CM_MASTER_KEY="gaps-master-key", CM_LEGACY_SECRET_KEY=SECRET_KEY, CM_LOG_LEVEL="debug"),
    )
    assert done.returncode == 1, done.stderr  # items failed, the rest imported
    out = done.stdout + done.stderr
    for line in (f"{INDIVIDUAL}/{bob}", f"{INDIVIDUAL}/{carol}", f"{BUSINESS}/{business}", "auth.clientSecret"):
        assert line in out, out
    for secret in (
        "GAPS-GOOGLE-SECRET",
        "GAPS-REFRESH-ALICE",
        "GAPS-ACCESS-BOB",
        "GAPS-REFRESH-BOB",
        "GAPS-ACCESS-CAROL",
        "GAPS-REFRESH-CAROL",
        "GAPS-PK",
        "GAPS-LIST-SECRET",
        seed.jwt_secret,
    ):
        assert secret not in out, secret


@pytest.mark.parametrize("first_updated_last", [True, False], ids=["updatedAt-decides", "last-written-decides"])
async def test_duplicate_enabled_state_documents_are_reported_and_one_is_chosen_by_a_stated_rule(
    tmp_path: Path,
    seed: SeedDeployment,
    idp: FakeOAuthProvider,
    etcd_endpoint: tuple[str, int],
    mongo_url: str,
    first_updated_last: bool,
) -> None:
    org = await seed.org(account_type="individual")
    alice = await seed.user(org, "alice@acme.example")
    await seed.google_oauth_config("gaps-google-client", "GAPS-GOOGLE-SECRET")
    await seed.google_individual_credentials(
        alice, access_token="GAPS-ACCESS", refresh_token="GAPS-REFRESH", expiry_ms=AN_HOUR_AHEAD_MS
    )
    enabled = await seed.connector_doc(org, "Google Workspace", enabled=True, by=alice)
    disabled = await seed.connector_doc(org, "Google Workspace", enabled=False, by=alice)
    stamp = datetime(2026, 1, 2, 3, 4, 5)
    await seed.db["connectorsConfig"].update_one({"_id": disabled}, {"$set": {"updatedAt": stamp}})
    later = stamp + timedelta(days=1) if first_updated_last else stamp
    await seed.db["connectorsConfig"].update_one({"_id": enabled}, {"$set": {"updatedAt": later}})

    done, _ = await do_import(tmp_path, seed, etcd_endpoint, mongo_url)
    kept, dropped = (enabled, disabled) if first_updated_last else (disabled, enabled)
    skipped = reasons(done.report, ImportOutcome.SKIPPED)
    reason = skipped[f"connectorsConfig Google Workspace of org {org} (document {dropped})"]
    assert f"document {kept} is used" in reason, done.report
    assert ("updated last" in reason) if first_updated_last else ("last written" in reason)
    c = await container(tmp_path, idp)
    try:
        assert (await c.connectors.get(str(org), "googleWorkspace")).connector.is_enabled is first_updated_last
    finally:
        await c.aclose()
