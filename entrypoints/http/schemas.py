"""JSON Schemas shared by request validation and the OpenAPI document (one source)."""

from __future__ import annotations

from typing import Any

from entrypoints.http.connector_schemas import OAUTH_BASE_PATTERN
from entrypoints.http.validation import WEB_URL_PATTERN

#: a base URL the OAuth routes build the redirect URI on (its origin must also be allowed)
OAUTH_BASE_URL: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 2048,
    "pattern": OAUTH_BASE_PATTERN,
    "description": "Where the browser returns: an allowed origin (oauth_allowed_origins; by default "
    "http://localhost and http://127.0.0.1; the service's own URL always) with an optional path, "
    "no query or fragment.",
}

NAME_PARAM = {"type": "string", "minLength": 1, "maxLength": 100}

DATE_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}

REFRESH_TOKEN_OUTLOOK = {
    "type": ["object", "null"],
    "description": "The refresh token's lineage (begun by an authorization, continued by each refresh) and when "
    "it is expected to die: the provider's limits in the catalog (Google: unused 180 days, 7 days after consent "
    "for apps in testing mode — auth.testingMode; Microsoft: unused 90 days; Atlassian: unused 90 days, 365 days "
    "after consent) or the provider's refresh_token_expires_in. null when the token has no refresh token.",
    "properties": {
        "lineageStartedAt": {"type": "string", "format": "date-time"},
        "lastUsedAt": {**DATE_TIME_OR_NULL, "description": "the last refresh the provider accepted"},
        "expiresAt": {**DATE_TIME_OR_NULL, "description": "expected death; null when no limit is known"},
        "expiresBecause": {"enum": ["provider", "inactivity", "lifetime", "testingMode", None]},
        "warning": {
            "enum": ["within7Days", "within1Day", "expired", None],
            "description": "set from 7 days before expiresAt; authorize again before then "
            "(TOKEN_EXPIRING is sent once per lineage at 7 days and at 1 day)",
        },
    },
}

TOKEN = {
    "type": ["object", "null"],
    "description": "The connector's stored token (lists only; null when it has none). Never any token material.",
    "properties": {
        "status": {"enum": ["ACTIVE", "PAUSED", "NEEDS_REAUTHENTICATION", "REVOKED"]},
        "accessTokenExpiresAt": DATE_TIME_OR_NULL,
        "lastRefreshedAt": {"type": "string", "format": "date-time", "description": "granted or last refreshed"},
        "refreshToken": REFRESH_TOKEN_OUTLOOK,
    },
}

CONNECTOR = {
    "type": "object",
    "properties": {
        "id": {"type": ["string", "null"]},
        "key": {"type": "string"},
        "name": {"type": "string"},
        "appGroup": {"type": "string"},
        "apps": {"type": "array", "items": {"type": "string"}},
        "authTypes": {"type": "array", "items": {"type": "string"}},
        "authType": {"type": "string"},
        "isEnabled": {"type": "boolean"},
        "isConfigured": {"type": "boolean"},
        "authStatus": {
            "type": "object",
            "properties": {
                "state": {
                    "enum": [
                        "NOT_CONFIGURED",
                        "NOT_AUTHENTICATED",
                        "AUTHENTICATED",
                        "NEEDS_REAUTHENTICATION",
                    ]
                },
                "reason": {"type": ["string", "null"]},
                "changedAt": {"type": ["string", "null"], "format": "date-time"},
            },
        },
        "enabledApps": {"type": "array", "items": {"type": "string"}},
        "lastUpdatedBy": {"type": ["string", "null"]},
        "createdAt": {"type": ["string", "null"], "format": "date-time"},
        "updatedAt": {"type": ["string", "null"], "format": "date-time"},
        "version": {"type": "integer"},
        "token": TOKEN,
    },
}

CONNECTOR_LIST = {"type": "array", "items": {"$ref": "#/components/schemas/Connector"}}

CONFIG_VIEW = {
    "type": "object",
    "properties": {
        "key": {"type": "string"},
        "name": {"type": "string"},
        "isEnabled": {"type": "boolean"},
        "authType": {"type": "string"},
        "config": {
            "type": "object",
            "description": "Secrets never appear: each is replaced by has<Field>: true|false.",
            "properties": {
                "auth": {"type": "object"},
                "sync": {"type": "object"},
                "filters": {"type": "object"},
                "baseUrl": {"type": ["string", "null"]},
            },
        },
        "missing": {"type": "array", "items": {"type": "string"}},
        "authStatus": {"type": "string"},
        "version": {"type": "integer"},
    },
}

CONFIG_BODY: dict[str, Any] = {
    "type": "object",
    "description": "Validated further against GET /schema/{name} of that connector. Secret "
    "fields are write-only; omit one to keep the stored value, send null to remove it.",
    "properties": {
        "auth": {"type": "object"},
        "sync": {"type": "object"},
        "filters": {"type": "object"},
        "baseUrl": {"type": "string", "minLength": 1, "maxLength": 2048, "pattern": WEB_URL_PATTERN},
    },
    "required": ["baseUrl"],
    "additionalProperties": False,
}

FILTERS_BODY: dict[str, Any] = {
    "type": "object",
    "properties": {"filterOptions": {"type": "object"}},
    "required": ["filterOptions"],
    "additionalProperties": False,
}

FILTERS_VIEW = {
    "type": "object",
    "properties": {
        "key": {"type": "string"},
        "filterOptions": {"type": "object"},
        "available": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "key": {"type": "string"},
                    "label": {"type": "string"},
                    "type": {"enum": ["multiselect", "list", "date", "boolean", "string"]},
                    "options": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}

SCHEMA_VIEW = {
    "type": "object",
    "properties": {
        "key": {"type": "string"},
        "name": {"type": "string"},
        "schema": {"type": "object"},
    },
}

TOGGLE_BODY: dict[str, Any] = {
    "type": "object",
    "description": "Optional. With enabled, the connector is set to that state (sending it again "
    "changes nothing); without it, an enabled connector is disabled and a disabled one enabled.",
    "properties": {"enabled": {"type": "boolean"}},
    "additionalProperties": False,
}

TOGGLE_VIEW = {
    "type": "object",
    "properties": {
        "message": {"type": "string"},
        "connector": {"$ref": "#/components/schemas/Connector"},
    },
}

CONFIG_SAVED = {
    "type": "object",
    "properties": {
        "message": {"type": "string"},
        "config": {"$ref": "#/components/schemas/ConnectorConfig"},
        "connector": {"$ref": "#/components/schemas/Connector"},
    },
}

HEALTH = {
    "type": "object",
    "required": ["status", "timestamp", "services"],
    "properties": {
        "status": {"enum": ["healthy", "unhealthy"]},
        "timestamp": {"type": "string", "format": "date-time"},
        "services": {
            "type": "object",
            "additionalProperties": {"enum": ["healthy", "unhealthy", "unknown"]},
        },
    },
}

MESSAGE = {"type": "object", "properties": {"message": {"type": "string"}}}

AUTHORIZE_QUERY: dict[str, Any] = {
    "type": "object",
    "properties": {"baseUrl": OAUTH_BASE_URL},
    "required": ["baseUrl"],
}

AUTHORIZE_VIEW = {
    "type": "object",
    "properties": {"authorizationUrl": {"type": "string", "format": "uri"}},
}

CALLBACK_QUERY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "minLength": 1, "maxLength": 4096},
        "state": {"type": "string", "minLength": 1, "maxLength": 512},
        "error": {"type": "string", "minLength": 1, "maxLength": 256},
        "error_description": {"type": "string", "maxLength": 2048},
        "baseUrl": OAUTH_BASE_URL,
    },
    "required": ["baseUrl"],
}

CALLBACK_VIEW = {
    "type": "object",
    "properties": {
        "redirectUrl": {"type": "string"},
        "authenticated": {"type": "boolean"},
        "reason": {"type": ["string", "null"]},
        "connector": {"$ref": "#/components/schemas/Connector"},
    },
}

TEMP_CODE_BODY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tempCode": {"type": "string", "minLength": 1, "maxLength": 4096},
        "baseUrl": OAUTH_BASE_URL,
    },
    "required": ["tempCode"],
    "additionalProperties": False,
}

REFRESH_BODY: dict[str, Any] = {
    "type": "object",
    "description": "Which connector; orgId defaults to the scoped token's orgId claim. userId and scopes"
    " (sent by the existing service's consumers) are accepted and ignored.",
    "properties": {
        "connector": {"type": "string", "minLength": 1, "maxLength": 100},
        "orgId": {"type": "string", "minLength": 1, "maxLength": 200},
        "userId": {"type": "string", "maxLength": 200},
        "scopes": {"type": "array", "items": {"type": "string", "maxLength": 200}, "maxItems": 50},
    },
    "additionalProperties": False,
}

CREDENTIALS_QUERY: dict[str, Any] = {
    "type": "object",
    "properties": {"orgId": {"type": "string", "minLength": 1, "maxLength": 200}},
}

CREDENTIALS_VIEW = {
    "type": "object",
    "description": "What a backend service needs to sync the connector (scoped callers of its org only):"
    " an OAuth connector's fresh access token (accessToken, tokenType, expiresAt, scopes); any other"
    " connector's stored credentials: authType, baseUrl and its auth fields, secrets included"
    " (API_TOKEN: email, apiToken; SERVICE_ACCOUNT: serviceAccountJson, adminEmail).",
    "properties": {
        "accessToken": {"type": "string"},
        "tokenType": {"type": "string"},
        "expiresAt": {"type": ["string", "null"], "format": "date-time"},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "authType": {"type": "string", "examples": ["API_TOKEN"]},
        "baseUrl": {"type": ["string", "null"]},
    },
}

LEGACY_CREDENTIALS_VIEW = {
    "type": "object",
    "description": "The existing service's credentials payload (compat = pipeshub).",
    "properties": {
        "access_token": {"type": "string"},
        "access_token_expiry_time": {"type": "integer", "description": "epoch milliseconds"},
    },
    "required": ["access_token"],
}

EVENTS_QUERY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "limit": {
            "type": "string",
            "pattern": "^[0-9]{1,4}$",
            "description": "at most this many events (default 100, at most 1000)",
        },
        "after": {
            "type": "string",
            "minLength": 1,
            "maxLength": 200,
            "pattern": "^[!-~]+$",
            "description": "an eventId: the events stored after it, oldest first; pass `next` to read the"
            " next page. Without it: the newest events.",
        },
    },
}

EVENTS_VIEW = {
    "type": "object",
    "required": ["events", "next"],
    "properties": {
        "events": {"type": "array", "items": {"type": "object"}},
        "next": {
            "type": ["string", "null"],
            "description": "the cursor for the next page: an eventId no event still being stored can come"
            " before (the last returned where the store orders by commit; on MongoDB the newest one stored"
            " a few seconds ago, so the newest events come again: dedupe on eventId), else the after given",
        },
    },
}

RELOAD_VIEW = {
    "type": "object",
    "properties": {
        "message": {"type": "string"},
        "generation": {"type": "integer"},
        "connectors": {"type": "array", "items": {"type": "string"}},
    },
}

COMPONENTS = {
    "Connector": CONNECTOR,
    "ConnectorConfig": CONFIG_VIEW,
    "Health": HEALTH,
}
