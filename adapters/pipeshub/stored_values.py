"""One stored value of the existing deployment put in our terms: times, ids, a token record, a
service account's key file, an enabled state, a client configuration's fields as its form took
them. :class:`Unusable` says why a value cannot be imported, naming its fields, never quoting a
value."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connector_core.ports.deployment_source import ImportedToken

Doc = dict[str, Any]

#: what a key file cannot do without (google-auth signs with the key, as the client email, at the
#: token URI); the other fields are kept when stored
_KEY_FILE_REQUIRED = ("type", "project_id", "private_key_id", "private_key", "client_email", "client_id", "token_uri")
_SERVICE_ACCOUNT_FIELDS = (
    "type",
    "project_id",
    "private_key_id",
    "private_key",
    "client_email",
    "client_id",
    "auth_uri",
    "token_uri",
    "auth_provider_x509_cert_url",
    "client_x509_cert_url",
    "universe_domain",
)
#: a URL of a host alone (a trailing slash allowed), the form the existing service asked the
#: SharePoint domain in ("https://your-domain.sharepoint.com"); any other host (a port, user
#: info, a path, characters a host name here cannot have) is left as stored for the check
_URL_OF_HOST = re.compile(r"(?i:https?)://([A-Za-z0-9.-]+)/?")


class Unusable(Exception):
    """One stored value that cannot be imported, and why (never the value)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def epoch_ms(value: Any, name: str) -> datetime | None:
    """Epoch milliseconds as a time; ``None`` when not set (absent, null, 0 or less).
    :class:`Unusable` naming ``name`` when it is no time a clock can hold (``1e999``, ``10**20``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unusable(f"{name} is not a number of milliseconds")
    if value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise Unusable(f"{name} is out of range (not a time)") from None


def text_id(value: Any) -> str | None:
    return None if value is None else str(value)


def key_file(value: Mapping[str, Any]) -> str:
    """The service account's key file as JSON text: each field stored as text, those it cannot do
    without present; :class:`Unusable` naming every field at fault (never a value)."""
    missing = [f for f in _KEY_FILE_REQUIRED if value.get(f) is None or value.get(f) == ""]
    not_text = [f for f in _SERVICE_ACCOUNT_FIELDS if value.get(f) is not None and not isinstance(value.get(f), str)]
    if missing or not_text:
        problems = [f"{', '.join(missing)} missing"] if missing else []
        problems += [f"{', '.join(not_text)} not text"] if not_text else []
        raise Unusable(f"the service-account key file cannot be used: {'; '.join(problems)}")
    return json.dumps({f: value[f] for f in _SERVICE_ACCOUNT_FIELDS if value.get(f) is not None})


def timestamp(when: datetime | None) -> float:
    return when.timestamp() if when is not None else 0.0


def can_refresh(token: ImportedToken, now: float) -> bool:
    """A refresh token, and no stored expiry of it passed at ``now`` (epoch seconds)."""
    ends = token.refresh_token_expires_at
    return token.refresh_token is not None and (ends is None or ends.timestamp() > now)


def enabled_state(doc: Doc | None) -> tuple[bool, str | None]:
    """Enabled (the existing service's default is true) and by whom."""
    if doc is None:
        return False, None
    return doc.get("isEnabled", True) is not False, text_id(doc.get("lastUpdatedBy"))


def real_time(value: Mapping[str, Any]) -> dict[str, Any]:
    on = value.get("enableRealTimeUpdates") is True
    topic = value.get("topicName")
    return {"enableRealTimeUpdates": on, **({"topicName": topic} if on and isinstance(topic, str) and topic else {})}


def stored_token(user: str, value: Mapping[str, Any]) -> ImportedToken:
    """The stored token. A refresh token without an access token is usable: imported with an
    empty access token and no expiry, which the importer takes as expiring now (refreshed at
    the first chance). :class:`Unusable` without either, or when a time in it is no time."""
    access, refresh = value.get("access_token"), value.get("refresh_token")
    for name, found in (("access_token", access), ("refresh_token", refresh)):
        if found is not None and not isinstance(found, str):
            raise Unusable(f"{name} is not text")
    if not access and not refresh:
        raise Unusable("neither an access token nor a refresh token in the stored credentials")
    return ImportedToken(
        account_id=user,
        access_token=access or "",
        refresh_token=refresh or None,
        # without an access token its expiry says nothing: refreshed at the first chance
        expires_at=epoch_ms(value.get("access_token_expiry_time"), "access_token_expiry_time") if access else None,
        refresh_token_expires_at=epoch_ms(value.get("refresh_token_expiry_time"), "refresh_token_expiry_time"),
    )


def as_its_form_took_them(auth: Mapping[str, Any]) -> tuple[Doc, list[str]]:
    """A client configuration's fields in our terms where the existing service's form
    legitimately stored what our schema refuses, and a note for each field changed (naming the
    field; a domain is not secret, a tenant is never quoted):

    * ``sharepointDomain``: asked for there as a URL ("SharePoint domain URL"), here a host name:
      an http(s) URL of a host alone becomes that host; anything else is left for the check;
    * ``tenantId``: optional there, so stored as ``""``: not set here (no tenant is made up;
      the connector cannot be authorized until one is set)."""
    given = dict(auth)
    notes: list[str] = []
    domain = given.get("sharepointDomain")
    url = _URL_OF_HOST.fullmatch(domain) if isinstance(domain, str) else None
    if url is not None:
        given["sharepointDomain"] = url.group(1)
        notes.append(f"sharepointDomain stored there as a URL: imported as its host name {url.group(1)}")
    if given.get("tenantId") == "":
        del given["tenantId"]
        notes.append(
            "tenantId stored empty there (optional in its form): imported as not set; set it here before authorizing"
        )
    return given, notes
