"""connector_core: the pure domain of the connector manager.

Connector aggregate, token lifecycle, scope mapping, domain events, application services
and the ports they need. Standard library and attrs only.
"""

from connector_core.catalog import (
    Catalog,
    CatalogEntry,
    FilterDefinition,
    OAuthSpec,
    load_default_catalog,
)
from connector_core.errors import (
    BackendError,
    CommitOutcomeUnknown,
    Conflict,
    ConnectorDisabled,
    ConnectorManagerError,
    CryptoError,
    DomainRuleViolation,
    IdTokenInvalid,
    InvalidState,
    LeaseLost,
    NotConfigured,
    NotFound,
    NoTokens,
    OAuthError,
    PermissionDenied,
    ProviderError,
    ReauthorizationRequired,
    RetryableProviderError,
    Unauthenticated,
    Unavailable,
    UnknownConnector,
    UnknownEvent,
    ValidationError,
)
from connector_core.model.connector import (
    AuthState,
    AuthStatus,
    Connector,
    ConnectorConfig,
    EventRoutes,
)
from connector_core.model.events import (
    ENTITY_TOPIC,
    SYNC_TOPIC,
    TOKEN_TOPIC,
    AppDisabled,
    AppEnabled,
    AuthStatusChanged,
    ConnectorConfigured,
    DomainEvent,
    FiltersSaved,
    RealTimeUpdatesChanged,
    SyncAction,
    TokenEvent,
    TokenEventType,
)
from connector_core.scopes import ScopeMapper
from connector_core.services.connectors import ConfigUpdate, ConnectorService, ConnectorView
from connector_core.services.context import ServiceContext
from connector_core.services.oauth import CallbackResult, OAuthService
from connector_core.services.providers import ResolvedProvider
from connector_core.services.redirects import OAuthSettings
from connector_core.services.refresh import RefreshReport, TokenRefresher
from connector_core.tokens import (
    RefreshPolicy,
    TokenLifecycle,
    TokenRecord,
    TokenSet,
    TokenStatus,
    classify_token_error,
)

__all__ = [
    "ENTITY_TOKEN_TOPICS",
    "ENTITY_TOPIC",
    "SYNC_TOPIC",
    "TOKEN_TOPIC",
    "AppDisabled",
    "AppEnabled",
    "AuthState",
    "AuthStatus",
    "AuthStatusChanged",
    "BackendError",
    "CallbackResult",
    "Catalog",
    "CatalogEntry",
    "CommitOutcomeUnknown",
    "ConfigUpdate",
    "Conflict",
    "Connector",
    "ConnectorConfig",
    "ConnectorConfigured",
    "ConnectorDisabled",
    "ConnectorManagerError",
    "ConnectorService",
    "ConnectorView",
    "CryptoError",
    "DomainEvent",
    "DomainRuleViolation",
    "EventRoutes",
    "FilterDefinition",
    "FiltersSaved",
    "IdTokenInvalid",
    "InvalidState",
    "LeaseLost",
    "NoTokens",
    "NotConfigured",
    "NotFound",
    "OAuthError",
    "OAuthService",
    "OAuthSettings",
    "OAuthSpec",
    "PermissionDenied",
    "ProviderError",
    "RealTimeUpdatesChanged",
    "ReauthorizationRequired",
    "RefreshPolicy",
    "RefreshReport",
    "ResolvedProvider",
    "RetryableProviderError",
    "ScopeMapper",
    "ServiceContext",
    "SyncAction",
    "TokenEvent",
    "TokenEventType",
    "TokenLifecycle",
    "TokenRecord",
    "TokenRefresher",
    "TokenSet",
    "TokenStatus",
    "Unauthenticated",
    "Unavailable",
    "UnknownConnector",
    "UnknownEvent",
    "ValidationError",
    "classify_token_error",
    "load_default_catalog",
]

ENTITY_TOKEN_TOPICS = (ENTITY_TOPIC, TOKEN_TOPIC)
