"""A fixture writer that lays down data exactly as the existing Node.js service stores it.

etcd: values are raw UTF-8 bytes (no JSON quoting); every key but ``/services/endpoints`` and
``/services/storage`` holds ``hex(iv):hex(ciphertext):hex(tag)`` (AES-256-GCM, key = SHA-256 of
the UTF-8 ``SECRET_KEY``, 12-byte random IV, no associated data) of *compact* JSON
(``JSON.stringify``). MongoDB (database ``es``): ``org``, ``users``, ``userGroups`` and
``connectorsConfig`` documents with ObjectId ids, as mongoose writes them (``__v``, timestamps).

Nothing here imports product code (the encryption is written out again below), so the data
cannot drift towards what the importer happens to expect.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aetcd
import jwt
from bson import ObjectId
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

SECRET_KEY = "seed-deployment-SECRET_KEY-0123456789abcdef"
GOOGLE_CONFIG = "/services/connectors/googleWorkspace/oauth/config"
INDIVIDUAL = "/services/connectors/googleWorkspace/credentials/individual"
BUSINESS = "/services/connectors/googleWorkspace/credentials/business"

Doc = dict[str, Any]


def compact(value: Any) -> str:
    """``JSON.stringify``: no spaces."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def seal(plaintext: str, secret_key: str) -> str:
    """The existing service's ``EncryptionService.encrypt``: lowercase hex, colon-separated."""
    iv = os.urandom(12)
    sealed = AESGCM(hashlib.sha256(secret_key.encode("utf-8")).digest()).encrypt(iv, plaintext.encode("utf-8"), None)
    return f"{iv.hex()}:{sealed[:-16].hex()}:{sealed[-16:].hex()}"


def service_account(project: str = "acme-prod") -> Doc:
    """The 11 fields of a Google service-account key file."""
    return {
        "type": "service_account",
        "project_id": project,
        "private_key_id": "0123456789abcdef",
        "private_key": "-----BEGIN PRIVATE KEY-----\nPLANTED-SA-KEY\n-----END PRIVATE KEY-----\n",
        "client_email": f"sync@{project}.iam.gserviceaccount.com",
        "client_id": "112233445566778899",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/sync%40{project}.iam.gserviceaccount.com",
        "universe_domain": "googleapis.com",
    }


class SeedDeployment:
    """One existing deployment: its etcd (under ``namespace``, "" as in production) and its
    MongoDB database."""

    def __init__(
        self, etcd: aetcd.Client, db: AsyncDatabase[Doc], *, secret_key: str = SECRET_KEY, namespace: str = ""
    ) -> None:
        self.etcd, self.db, self.secret_key, self.namespace = etcd, db, secret_key, namespace
        self.jwt_secret = "seed-jwt-secret-" + ObjectId().binary.hex()
        self.scoped_jwt_secret = "seed-scoped-jwt-secret-" + ObjectId().binary.hex()

    # -- etcd --------------------------------------------------------------------------------

    async def put_encrypted(self, path: str, value: Doc) -> None:
        envelope = seal(compact(value), self.secret_key)
        await self.etcd.put((self.namespace + path).encode(), envelope.encode("utf-8"))

    async def put_plain(self, path: str, value: Doc) -> None:
        await self.etcd.put((self.namespace + path).encode(), compact(value).encode("utf-8"))

    async def raw(self, path: str) -> bytes | None:
        found = await self.etcd.get((self.namespace + path).encode())
        return None if found is None else bytes(found.value)

    async def snapshot(self) -> dict[str, bytes]:
        """Every key of the deployment with its raw value (to prove nothing changed)."""
        prefix = (self.namespace + "/services/").encode()
        return {bytes(kv.key).decode(): bytes(kv.value) for kv in await self.etcd.get_prefix(prefix)}

    async def clear(self) -> None:
        await self.etcd.delete_prefix((self.namespace + "/services/").encode())

    async def secret_keys(self) -> None:
        await self.put_encrypted(
            "/services/secretKeys",
            {"jwtSecret": self.jwt_secret, "scopedJwtSecret": self.scoped_jwt_secret, "cookieSecret": "seed-cookie"},
        )

    async def endpoints(self, frontend: str, cm: str) -> None:
        await self.put_plain(
            "/services/endpoints",
            {"frontend": {"publicEndpoint": frontend}, "cm": {"endpoint": cm, "publicEndpoint": cm}},
        )

    async def google_oauth_config(
        self, client_id: str, client_secret: str, *, real_time: bool = False, topic: str = ""
    ) -> None:
        await self.put_encrypted(
            GOOGLE_CONFIG,
            {
                "clientId": client_id,
                "clientSecret": client_secret,
                "enableRealTimeUpdates": real_time,
                "topicName": topic if real_time else "",
            },
        )

    async def google_individual_credentials(
        self,
        user_id: ObjectId,
        *,
        access_token: str,
        refresh_token: str,
        expiry_ms: int | None,
        refresh_expiry_ms: int | None = None,
        real_time: bool = False,
        topic: str = "",
    ) -> None:
        value: Doc = {"access_token": access_token, "refresh_token": refresh_token}
        if expiry_ms is not None:  # None: the field is absent, as in credentials stored without one
            value["access_token_expiry_time"] = expiry_ms
        if refresh_expiry_ms is not None:
            value["refresh_token_expiry_time"] = refresh_expiry_ms
        value |= {"enableRealTimeUpdates": real_time, "topicName": topic}
        await self.put_encrypted(f"{INDIVIDUAL}/{user_id}", value)

    async def google_business_credentials(
        self, org_id: ObjectId, *, admin_email: str, real_time: bool = False, topic: str = ""
    ) -> Doc:
        value = {**service_account(), "adminEmail": admin_email, "enableRealTimeUpdates": real_time, "topicName": topic}
        await self.put_encrypted(f"{BUSINESS}/{org_id}", value)
        return value

    async def onedrive_config(self, org_id: ObjectId, *, client_id: str, client_secret: str, tenant: str) -> None:
        await self.put_encrypted(
            f"/services/connectors/onedrive/config/{org_id}",
            {"clientId": client_id, "clientSecret": client_secret, "tenantId": tenant, "hasAdminConsent": True},
        )

    async def sharepoint_config(
        self, org_id: ObjectId, *, client_id: str, client_secret: str, tenant: str, domain: str
    ) -> None:
        await self.put_encrypted(
            f"/services/connectors/sharepoint/config/{org_id}",
            {
                "clientId": client_id,
                "clientSecret": client_secret,
                "tenantId": tenant,
                "hasAdminConsent": False,
                "sharepointDomain": domain,
            },
        )

    async def atlassian_config(self, org_id: ObjectId, *, client_id: str, client_secret: str) -> None:
        await self.put_encrypted(
            f"/services/connectors/atlassian/config/{org_id}", {"clientId": client_id, "clientSecret": client_secret}
        )

    # -- MongoDB -----------------------------------------------------------------------------

    @staticmethod
    def _stamped(doc: Doc) -> Doc:
        now = datetime.now(UTC).replace(microsecond=0)
        return {**doc, "createdAt": now, "updatedAt": now, "__v": 0}

    async def org(self, *, account_type: str = "individual", domain: str = "acme.example") -> ObjectId:
        org_id = ObjectId()
        await self.db["org"].insert_one(
            self._stamped(
                {
                    "_id": org_id,
                    "slug": f"org-{org_id}",
                    "registeredName": "Acme" if account_type == "business" else None,
                    "domain": domain,
                    "contactEmail": f"admin@{domain}",
                    "accountType": account_type,
                    "onBoardingStatus": "configured",
                    "isDeleted": False,
                }
            )
        )
        return org_id

    async def user(self, org_id: ObjectId, email: str, full_name: str = "A Person") -> ObjectId:
        user_id = ObjectId()
        await self.db["users"].insert_one(
            self._stamped(
                {
                    "_id": user_id,
                    "slug": f"user-{user_id}",
                    "orgId": org_id,
                    "fullName": full_name,
                    "email": email.lower(),
                    "hasLoggedIn": True,
                    "isDeleted": False,
                }
            )
        )
        return user_id

    async def group(
        self,
        org_id: ObjectId,
        kind: str,
        users: list[ObjectId],
        *,
        name: str | None = None,
        deleted: bool = False,
        ids_as_strings: bool = False,
    ) -> ObjectId:
        """A user group; ``kind`` is its type: admin, standard, everyone or custom."""
        group_id = ObjectId()
        members: list[Any] = [str(u) for u in users] if ids_as_strings else list(users)
        await self.db["userGroups"].insert_one(
            self._stamped(
                {
                    "_id": group_id,
                    "slug": f"group-{group_id}",
                    "name": name or kind,
                    "type": kind,
                    "orgId": str(org_id) if ids_as_strings else org_id,
                    "users": members,
                    "isDeleted": deleted,
                }
            )
        )
        return group_id

    async def connector_doc(self, org_id: ObjectId, name: str, *, enabled: bool, by: ObjectId) -> ObjectId:
        """A ``connectorsConfig`` document (``name`` is the display name: "Google Workspace", ...)."""
        doc_id = ObjectId()
        await self.db["connectorsConfig"].insert_one(
            self._stamped({"_id": doc_id, "orgId": org_id, "name": name, "isEnabled": enabled, "lastUpdatedBy": by})
        )
        return doc_id

    async def mongo_snapshot(self) -> dict[str, list[Doc]]:
        return {
            name: [d async for d in self.db[name].find({}).sort("_id", 1)]
            for name in ("org", "users", "userGroups", "connectorsConfig")
        }

    # -- tokens ------------------------------------------------------------------------------

    def user_token(self, user_id: ObjectId, org_id: ObjectId, email: str, *, account_type: str = "individual") -> str:
        """A user token as the existing service signs it: HS256, 24 h, no admin claim."""
        now = int(time.time())
        claims = {
            "userId": str(user_id),
            "orgId": str(org_id),
            "email": email,
            "fullName": "A Person",
            "accountType": account_type,
            "iat": now,
            "exp": now + 86400,
        }
        return jwt.encode(claims, self.jwt_secret, algorithm="HS256")

    def python_service_token(self, user_id: ObjectId, org_id: ObjectId) -> str:
        """A scoped token as its Python services mint it: no ``iat``, no ``exp``."""
        claims = {"orgId": str(org_id), "userId": str(user_id), "scopes": ["fetch:config"]}
        return jwt.encode(claims, self.scoped_jwt_secret, algorithm="HS256")


@contextlib.asynccontextmanager
async def seed_deployment(
    etcd_endpoint: tuple[str, int], mongo_url: str, *, namespace: str = ""
) -> AsyncIterator[SeedDeployment]:
    """An empty existing deployment on the test servers (its etcd keys under ``namespace``, its
    own MongoDB database), removed afterwards."""
    etcd = aetcd.Client(host=etcd_endpoint[0], port=etcd_endpoint[1])
    mongo: AsyncMongoClient[Doc] = AsyncMongoClient(mongo_url, serverSelectionTimeoutMS=2000)
    deployment = SeedDeployment(etcd, mongo[f"es_{ObjectId()}"], namespace=namespace)
    await deployment.clear()
    try:
        yield deployment
    finally:
        await deployment.clear()
        await mongo.drop_database(deployment.db.name)
        await mongo.close()
        await etcd.close()
