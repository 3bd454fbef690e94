"""Small builders for domain objects used across tests."""

from __future__ import annotations

from datetime import datetime, timedelta

from connector_core.catalog import Catalog
from connector_core.model.connector import Connector, ConnectorConfig
from connector_core.ports.ids import IdSource
from connector_core.tokens import RefreshPolicy, TokenLifecycle, TokenRecord, TokenSet
from tests.conftest import CountingIds, SeededRandom


def api_token_connector(
    catalog: Catalog,
    org_id: str,
    now: datetime,
    ids: IdSource | None = None,
    key: str = "confluence",
) -> Connector:
    """A configured (API-token) Confluence connector, not saved, events pulled."""
    ids = ids or CountingIds()
    entry = catalog.get(key)
    c = Connector.create(entry, org_id=org_id, connector_id=ids.new_id(), now=now, by="u1")
    c.update_configuration(
        entry,
        ConnectorConfig(
            auth={"authType": "API_TOKEN", "email": "a@example.com"},
            base_url="https://example.atlassian.net",
            secrets_set={"auth.apiToken"},
        ),
        by="u1",
        now=now,
        ids=ids,
        changed_secrets=["auth.apiToken"],
    )
    c.pull_events()
    return c


def token_record(
    org_id: str,
    now: datetime,
    *,
    key: str = "googleWorkspace",
    expires_in: float = 3600,
    access: str = "access-secret-value",
    refresh: str | None = "refresh-secret-value",
    token_id: str | None = None,
    ids: IdSource | None = None,
    policy: RefreshPolicy | None = None,
) -> TokenRecord:
    ids = ids or CountingIds("tok")
    tokens = TokenSet(
        access_token=access,
        obtained_at=now,
        refresh_token=refresh,
        expires_at=now + timedelta(seconds=expires_in),
        scopes=frozenset({"openid", "https://www.googleapis.com/auth/drive.readonly"}),
    )
    return TokenRecord.create(
        token_id=token_id or ids.new_id(),
        org_id=org_id,
        connector_key=key,
        account_id="user-1",
        service_type="GOOGLE_DRIVE",
        tokens=tokens,
        lifecycle=TokenLifecycle(policy or RefreshPolicy(), SeededRandom()),
        now=now,
        ids=ids,
    )
