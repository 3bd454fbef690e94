"""The existing deployment (the Node.js service's etcd and MongoDB) as a :class:`DeploymentSource`.

What it stores, and what each becomes here (catalog keys and configuration fields):

=============================================================  ==================================
``/services/connectors/googleWorkspace/oauth/config``          ``googleWorkspace`` (OAUTH) client
(one for the deployment)                                       of every individual org
``.../credentials/individual/{userId}``                        that org's token (user → org from
                                                               ``users``); one per org here
``.../credentials/business/{orgId}``                           ``googleWorkspace`` SERVICE_ACCOUNT
``/services/connectors/onedrive/config/{orgId}``               ``onedrive``
``/services/connectors/sharepoint/config/{orgId}``             ``sharepointOnline``
``/services/connectors/atlassian/config/{orgId}``              ``confluence`` and ``jira``
``connectorsConfig`` ``{orgId, name, isEnabled}``              whether each is enabled
``/services/secretKeys``, ``/services/endpoints``              signing secrets, front-end URL
=============================================================  ==================================

Individual vs business Google credentials follow the org's ``accountType`` (``org``). Values
are read raw and decrypted one by one (``decrypt``: the old ``hex(iv):hex(ct):hex(tag)`` format),
so one value that cannot be decrypted fails alone, named, never quoted. Nothing is written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from functools import partial
from typing import Any

from attrs import define, field
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from adapters.pipeshub.stored_values import (
    Doc,
    Unusable,
    as_its_form_took_them,
    can_refresh,
    enabled_state,
    key_file,
    real_time,
    stored_token,
    text_id,
    timestamp,
)
from connector_core.errors import ConnectorManagerError, Unavailable
from connector_core.ports.deployment_source import (
    DeploymentSnapshot,
    ImportCandidate,
    ImportedToken,
    SourceIssue,
)
from connector_core.ports.kv_store import KeyValueStore

__all__ = ["PipesHubSource"]

log = logging.getLogger(__name__)

#: ``decrypt(envelope, path) -> plaintext``
Decrypt = Callable[[str, str], bytes]

CONNECTORS = "/services/connectors/"
GOOGLE_CONFIG = "/services/connectors/googleWorkspace/oauth/config"
INDIVIDUAL = "/services/connectors/googleWorkspace/credentials/individual/"
BUSINESS = "/services/connectors/googleWorkspace/credentials/business/"
SECRET_KEYS = "/services/secretKeys"
ENDPOINTS = "/services/endpoints"
GOOGLE = "Google Workspace"
#: the existing service's per-org client configurations: its app key → (display name, our keys)
ORG_CONFIGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "onedrive": ("OneDrive", ("onedrive",)),
    "sharepoint": ("SharePoint Online", ("sharepointOnline",)),
    "atlassian": ("Atlassian", ("confluence", "jira")),
}
_CLIENT_FIELDS = ("clientId", "clientSecret", "tenantId", "hasAdminConsent", "sharepointDomain")


@contextlib.contextmanager
def _mongo(action: str) -> Iterator[None]:
    try:
        yield
    except PyMongoError as exc:
        raise Unavailable(f"the existing deployment's MongoDB failed to {action} ({type(exc).__name__})") from exc


@define
class _Read:
    """What was read, before it is put in our terms."""

    values: dict[str, Doc] = field(factory=dict)
    failed: list[SourceIssue] = field(factory=list)
    skipped: list[SourceIssue] = field(factory=list)
    orgs: dict[str, str | None] = field(factory=dict)  # org id → accountType
    users: dict[str, str] = field(factory=dict)  # user id → org id
    docs: dict[tuple[str, str], Doc] = field(factory=dict)  # (org id, name) → connectorsConfig
    now: float = field(factory=time.time)  # when it was read, for the tokens' stored expiries

    def fail(self, item: str, reason: str) -> None:
        self.failed.append(SourceIssue(item, reason))

    def skip(self, item: str, reason: str) -> None:
        self.skipped.append(SourceIssue(item, reason))


class PipesHubSource:
    """Reads the existing deployment: ``raw`` is its etcd (values as stored), ``db`` its MongoDB
    database (``es``)."""

    def __init__(self, raw: KeyValueStore, decrypt: Decrypt, db: AsyncDatabase[Doc]) -> None:
        self._raw, self._decrypt, self._db = raw, decrypt, db

    async def read(self) -> DeploymentSnapshot:
        r = _Read()
        await self._read_etcd(r)
        await self._read_mongo(r)
        candidates: list[ImportCandidate] = []
        for org in sorted(set(r.orgs) | self._orgs_named(r)):
            candidates += _alone(r, f"{GOOGLE} of org {org}", partial(self._google, r, org))
            for app, (name, keys) in ORG_CONFIGS.items():
                candidates += _alone(r, f"{name} of org {org}", partial(self._client_config, r, org, app, name, keys))
        self._leftover_documents(r)
        _account_for_every_key(r, candidates)
        secrets = r.values.get(SECRET_KEYS)
        endpoints = r.values.get(ENDPOINTS) or {}
        frontend = endpoints.get("frontend")
        return DeploymentSnapshot(
            candidates=tuple(candidates),
            skipped=tuple(r.skipped),
            failed=tuple(r.failed),
            service_secrets={k: str(v) for k, v in secrets.items() if isinstance(v, str)} if secrets else None,
            frontend_url=frontend.get("publicEndpoint") if isinstance(frontend, Mapping) else None,
        )

    # -- reading -------------------------------------------------------------------------------

    async def _read_etcd(self, r: _Read) -> None:
        stored = dict(await self._raw.list_prefix(CONNECTORS))
        for key in (SECRET_KEYS, ENDPOINTS):
            found = await self._raw.get(key)
            if found is not None:
                stored[key] = found
        for key, versioned in sorted(stored.items()):
            try:
                text = versioned.value if key == ENDPOINTS else self._decrypt(versioned.value, key).decode("utf-8")
                value = json.loads(text)
            except ConnectorManagerError as exc:
                r.failed.append(SourceIssue(key, exc.message))
                continue
            except (UnicodeDecodeError, json.JSONDecodeError):
                r.failed.append(SourceIssue(key, "the decrypted value is not JSON"))
                continue
            except RecursionError:
                r.failed.append(SourceIssue(key, "the decrypted value is nested too deeply to read (RecursionError)"))
                continue
            except Exception as exc:  # one value never stops the others; its message may quote it
                r.failed.append(SourceIssue(key, f"could not be read ({type(exc).__name__})"))
                continue
            if not isinstance(value, dict):
                r.failed.append(SourceIssue(key, "the value is not a JSON object"))
                continue
            r.values[key] = value
        for key in r.values:
            if key.startswith(CONNECTORS) and not self._known(key):
                r.skipped.append(SourceIssue(key, _unknown_key_reason(key)))

    @staticmethod
    def _known(key: str) -> bool:
        if key == GOOGLE_CONFIG or key.startswith((INDIVIDUAL, BUSINESS)):
            return True
        parts = key[len(CONNECTORS) :].split("/")
        return len(parts) == 3 and parts[0] in ORG_CONFIGS and parts[1] == "config"

    async def _read_mongo(self, r: _Read) -> None:
        with _mongo("read its orgs"):
            async for found in self._db["org"].find({}, {"accountType": 1, "isDeleted": 1}):
                if found.get("isDeleted") is not True:
                    r.orgs[str(found["_id"])] = found.get("accountType")
        with _mongo("read its users"):
            async for user in self._db["users"].find({}, {"orgId": 1}):
                if user.get("orgId") is not None:
                    r.users[str(user["_id"])] = str(user["orgId"])
        grouped: dict[tuple[str, str], list[Doc]] = {}
        with _mongo("read its connectorsConfig documents"):
            # documents this service wrote (org_id) are ours, not the existing service's
            async for doc in self._db["connectorsConfig"].find({"org_id": {"$exists": False}}).sort("_id", 1):
                org, name = text_id(doc.get("orgId")), doc.get("name")
                if org and isinstance(name, str):
                    grouped.setdefault((org, name), []).append(doc)
        for (org, name), docs in grouped.items():
            r.docs[(org, name)] = _one_document(r, org, name, docs)

    @staticmethod
    def _orgs_named(r: _Read) -> set[str]:
        named = {org for org, _ in r.docs} | {r.users[u] for u in _individual(r) if u in r.users}
        named |= {key[len(BUSINESS) :] for key in r.values if key.startswith(BUSINESS)}
        for key in r.values:
            parts = key[len(CONNECTORS) :].split("/")
            if len(parts) == 3 and parts[0] in ORG_CONFIGS:
                named.add(parts[2])
        return named

    # -- putting it in our terms ---------------------------------------------------------------

    def _google(self, r: _Read, org: str) -> list[ImportCandidate]:
        doc = r.docs.pop((org, GOOGLE), None)
        enabled, by = enabled_state(doc)
        business = r.values.get(BUSINESS + org)
        users = sorted(u for u in _individual(r) if r.users.get(u) == org)
        if business is not None or r.orgs.get(org) == "business":
            for user in users:
                r.skip(
                    INDIVIDUAL + user,
                    f"org {org} is a business org (its accountType, or service-account credentials): its users'"
                    " individual Google Workspace credentials are not used there",
                )
            if business is None:
                if doc is not None:
                    r.skipped.append(
                        SourceIssue(
                            f"connectorsConfig {GOOGLE} of org {org}",
                            "a business org without service-account credentials",
                        )
                    )
                return []
            try:
                account_key = key_file(business)
            except Unusable as exc:
                r.fail(BUSINESS + org, exc.reason)
                return []
            account = {
                "authType": "SERVICE_ACCOUNT",
                "serviceAccountJson": account_key,
                "adminEmail": business.get("adminEmail"),
                **real_time(business),
            }
            return [ImportCandidate(org, "googleWorkspace", account, enabled, BUSINESS + org, None, by)]
        client = r.values.get(GOOGLE_CONFIG)
        if client is None and not users and doc is None:
            return []
        auth: dict[str, Any] = {"authType": "OAUTH"}
        if client is not None:
            # whatever is stored, checked by the importer as a configuration save is (never dropped)
            auth |= {k: client[k] for k in ("clientId", "clientSecret") if client.get(k) is not None}
            auth |= real_time(client)
        token, notes = _pick_token(r, org, users, by)
        if doc is None and users:
            notes.append("no connectorsConfig document there: imported disabled")
        sources = [p for p in (GOOGLE_CONFIG if client else None,) if p]
        sources += [INDIVIDUAL + token.account_id] if token else []
        source = ", ".join(sources) or f"connectorsConfig {GOOGLE}"
        return [ImportCandidate(org, "googleWorkspace", auth, enabled, source, token, by, tuple(notes))]

    def _client_config(self, r: _Read, org: str, app: str, name: str, keys: tuple[str, ...]) -> list[ImportCandidate]:
        path = f"{CONNECTORS}{app}/config/{org}"
        value = r.values.get(path)
        doc = r.docs.pop((org, name), None)
        if value is None:
            if doc is not None:
                r.skipped.append(
                    SourceIssue(f"connectorsConfig {name} of org {org}", f"no client configuration at {path}")
                )
            return []
        enabled, by = enabled_state(doc)
        # a field stored as null there is not set: never the text "None"
        auth, notes = as_its_form_took_them({k: value[k] for k in _CLIENT_FIELDS if value.get(k) is not None})
        auth = {"authType": "OAUTH", **auth}
        return [ImportCandidate(org, key, auth, enabled, path, None, by, tuple(notes)) for key in keys]

    @staticmethod
    def _leftover_documents(r: _Read) -> None:
        for (org, name), _ in sorted(r.docs.items()):
            r.skipped.append(
                SourceIssue(
                    f"connectorsConfig {name} of org {org}", "an enabled state without a configuration to import"
                )
            )
        for user in _individual(r):
            if user not in r.users:
                r.skipped.append(SourceIssue(INDIVIDUAL + user, "its user is not in users: its org is unknown"))


def _pick_token(r: _Read, org: str, users: list[str], by: str | None) -> tuple[ImportedToken | None, list[str]]:
    """The org's one token here: among its users' usable ones, the consenting user's
    (``lastUpdatedBy``), else one that can refresh before one that cannot (it would die with its
    access token), then the one that expires last; each unusable one is reported failed, each
    other usable one skipped, naming the one imported."""
    usable: dict[str, ImportedToken] = {}
    for user in users:
        try:
            usable[user] = stored_token(user, r.values[INDIVIDUAL + user])
        except Unusable as exc:
            r.fail(INDIVIDUAL + user, exc.reason)
    if not usable:
        return None, []
    notes: list[str] = []
    if by in usable:
        chosen = by
    else:
        chosen = max(usable, key=lambda u: (can_refresh(usable[u], r.now), timestamp(usable[u].expires_at), u))
        if by in users:
            notes.append(f"the consenting user {by}'s stored token is unusable (failed): user {chosen}'s is imported")
    for other in usable:
        if other != chosen:
            r.skip(INDIVIDUAL + other, f"org {org} keeps one Google Workspace token here; user {chosen}'s is imported")
    return usable[chosen], notes


def _alone(r: _Read, item: str, make: Callable[[], list[ImportCandidate]]) -> list[ImportCandidate]:
    """One org's connector put in our terms on its own: an error nobody foresaw (a value nested
    deeper than Python recurses, say) fails that item alone, named by its class only (its
    message may quote a value), and the rest of the import goes on."""
    try:
        return make()
    except Exception as exc:
        log.warning("the import could not put %s in this service's terms (%s)", item, type(exc).__name__)
        r.fail(item, f"could not be put in this service's terms ({type(exc).__name__}); nothing of it is imported")
        return []


def _account_for_every_key(r: _Read, candidates: list[ImportCandidate]) -> None:
    """Every connector key read is imported (a candidate's source), or reported skipped or failed:
    a key no rule above uses is reported too, never dropped in silence."""
    reported = {i.item for i in (*r.failed, *r.skipped)}
    reported |= {part for c in candidates for part in c.source.split(", ")}
    for key in sorted(r.values):
        if key.startswith(CONNECTORS) and key not in reported:
            r.skip(
                key,
                "the deployment's Google Workspace OAuth client: no individual org here to import it into"
                if key == GOOGLE_CONFIG
                else "read, but nothing here was made from it (no rule of the import uses it)",
            )


def _one_document(r: _Read, org: str, name: str, docs: list[Doc]) -> Doc:
    """The ``connectorsConfig`` document that counts when an org has several for one connector:
    the one updated last (``updatedAt``), else the last written (``_id`` order); each other one is
    reported skipped, naming the one used and why."""
    if len(docs) == 1:
        return docs[0]

    def updated(doc: Doc) -> float | None:
        when = doc.get("updatedAt")
        try:
            return when.timestamp() if isinstance(when, datetime) else None
        except (OverflowError, OSError, ValueError):  # a date no clock holds: as if not stamped
            return None

    stamped = [(t, d) for d in docs if (t := updated(d)) is not None]
    latest = [d for t, d in stamped if t == max(t for t, _ in stamped)]
    if len(latest) == 1:
        kept, rule = latest[0], "the one updated last"
    elif latest:
        kept, rule = latest[-1], "the last written of those updated last"
    else:
        kept, rule = docs[-1], "the last written"
    for doc in docs:
        if doc is not kept:
            r.skip(
                f"connectorsConfig {name} of org {org} (document {doc.get('_id')})",
                f"one of {len(docs)} documents for it there; document {kept.get('_id')} is used ({rule})",
            )
    return kept


def _individual(r: _Read) -> list[str]:
    return [key[len(INDIVIDUAL) :] for key in r.values if key.startswith(INDIVIDUAL)]


def _unknown_key_reason(key: str) -> str:
    parts = key[len(CONNECTORS) :].split("/")
    if len(parts) == 2 and parts[1] == "config":
        return "a deployment-wide configuration (not per org) of its Python connector service: configure it here"
    return "not a configuration this service knows"
