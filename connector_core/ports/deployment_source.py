"""An existing deployment to import from: what it holds, already put in our terms (catalog keys,
configuration field names) by the adapter that reads it. Nothing here is written back."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from attrs import field, frozen

__all__ = ["DeploymentSnapshot", "DeploymentSource", "ImportCandidate", "ImportedToken", "SourceIssue"]


def _frozen(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return dict(value)


@frozen
class ImportedToken:
    """An OAuth token the existing deployment stored for one account. ``scopes`` is empty when
    it did not store them."""

    account_id: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime | None
    refresh_token_expires_at: datetime | None = None
    scopes: tuple[str, ...] = ()


@frozen
class ImportCandidate:
    """One connector of one org as the existing deployment has it. ``auth`` holds every
    configuration field, secrets included (the importer stores each where the catalog says);
    ``source`` names where it was read, for the report."""

    org_id: str
    connector_key: str
    auth: Mapping[str, Any] = field(converter=_frozen, repr=False)
    enabled: bool
    source: str
    token: ImportedToken | None = None
    last_updated_by: str | None = None
    #: what the reader noticed and the report should say (never a value)
    notes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.connector_key} of org {self.org_id}"


@frozen
class SourceIssue:
    """Something read from the deployment that is not imported, and why (never a value)."""

    item: str
    reason: str


@frozen
class DeploymentSnapshot:
    candidates: tuple[ImportCandidate, ...] = ()
    #: the deployment's API signing secrets (jwtSecret, scopedJwtSecret, cookieSecret), if found
    service_secrets: Mapping[str, str] | None = field(default=None, repr=False)
    #: the deployment's front-end URL, if it names one (a setting to carry over)
    frontend_url: str | None = None
    #: read, but nothing of ours corresponds (reported as skipped)
    skipped: tuple[SourceIssue, ...] = ()
    #: could not be read: cannot be decrypted, malformed (reported as failed)
    failed: tuple[SourceIssue, ...] = ()


class DeploymentSource(Protocol):
    async def read(self) -> DeploymentSnapshot:
        """Everything importable, read once; never changes the deployment. :class:`Unavailable`
        when it cannot be reached."""
        ...
