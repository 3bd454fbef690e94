"""Errors raised by the connector manager.

Every error the core or an adapter raises derives from one root, so callers can
catch the whole family, and the HTTP layer maps classes to statuses in one table::

    ConnectorManagerError
    ├── NotFound                    the thing asked for does not exist (or is not visible)
    │   ├── UnknownConnector        no catalog entry for that connector name
    │   ├── NoTokens                the connector holds no tokens (never authorized, or revoked)
    │   └── UnknownEvent            no stored event has that id (a cursor that was pruned)
    ├── Conflict                    optimistic concurrency: the stored version moved on
    ├── ValidationError             input that breaks a rule, with the path of the field
    ├── DomainRuleViolation         an operation the aggregate refuses in its state
    │   ├── NotConfigured           enabling a connector that lacks what it needs
    │   └── ConnectorDisabled       asking for a disabled connector's tokens
    ├── PermissionDenied            the caller may not do this
    ├── Unauthenticated             the caller is not who they claim
    ├── OAuthError                  the authorization dance went wrong
    │   ├── InvalidState            unknown, expired, reused or foreign ``state``
    │   └── IdTokenInvalid          signature, issuer, audience, expiry or nonce
    ├── ProviderError               the OAuth provider refused or failed
    │   ├── RetryableProviderError  network, 5xx, 429: try again later
    │   └── ReauthorizationRequired invalid_grant and kin: a person must re-authorize
    ├── LeaseLost                   a lock/lease expired or was taken by another owner
    ├── Unavailable                 a dependency (storage, broker, backend) is down
    │   └── CommitOutcomeUnknown    a commit was sent, its outcome never came back
    ├── EventsRejected              the broker refused some events for good (too large, invalid)
    ├── BackendError                the backend connector service answered with an error
    └── CryptoError                 a stored secret cannot be decrypted (tampered, wrong key/path)
        └── UnreadableRecord        one stored record cannot be read (does not decrypt or decode)

Messages never contain secret values (tokens, client secrets, keys).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Self


class ConnectorManagerError(Exception):
    """Root of every error of this package."""

    code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, metadata: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, Any] = dict(metadata or {})


class NotFound(ConnectorManagerError):
    code = "NOT_FOUND"


class UnknownConnector(NotFound):
    code = "CONNECTOR_NOT_FOUND"


class NoTokens(NotFound):
    code = "NO_TOKENS"


class UnknownEvent(NotFound):
    code = "EVENT_NOT_FOUND"

    @classmethod
    def for_id(cls, event_id: str) -> Self:
        shown = event_id[:100]
        return cls(
            f"no stored event has the id {shown!r} (pruned, or never stored): read again without after",
            metadata={"after": shown},
        )


class Conflict(ConnectorManagerError):
    code = "CONFLICT"


class ValidationError(ConnectorManagerError):
    """Bad input. ``errors`` lists ``{"path": "auth.clientId", "message": ...}`` items."""

    code = "VALIDATION_ERROR"

    def __init__(
        self,
        message: str,
        *,
        errors: list[dict[str, str]] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        meta = dict(metadata or {})
        self.errors = list(errors or [])
        if self.errors:
            meta.setdefault("errors", self.errors)
        super().__init__(message, metadata=meta)

    @classmethod
    def for_field(cls, path: str, message: str) -> Self:
        return cls(f"{path}: {message}", errors=[{"path": path, "message": message}])


class DomainRuleViolation(ConnectorManagerError):
    code = "INVALID_OPERATION"


class NotConfigured(DomainRuleViolation):
    code = "CONNECTOR_NOT_CONFIGURED"


class ConnectorDisabled(DomainRuleViolation):
    code = "CONNECTOR_DISABLED"


class PermissionDenied(ConnectorManagerError):
    code = "FORBIDDEN"


class Unauthenticated(ConnectorManagerError):
    code = "UNAUTHORIZED"


class OAuthError(ConnectorManagerError):
    code = "OAUTH_ERROR"


class InvalidState(OAuthError):
    code = "INVALID_STATE"


class IdTokenInvalid(OAuthError):
    code = "INVALID_ID_TOKEN"


class ProviderError(ConnectorManagerError):
    """The provider failed. ``error_code`` is the OAuth ``error`` field when there was one."""

    code = "PROVIDER_ERROR"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, metadata=metadata)
        self.status = status
        self.error_code = error_code


class RetryableProviderError(ProviderError):
    code = "PROVIDER_UNAVAILABLE"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        retry_after: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, status=status, error_code=error_code, metadata=metadata)
        self.retry_after = retry_after


class ReauthorizationRequired(ProviderError):
    code = "REAUTHORIZATION_REQUIRED"


class LeaseLost(ConnectorManagerError):
    code = "LEASE_LOST"


class Unavailable(ConnectorManagerError):
    code = "SERVICE_UNAVAILABLE"


class CommitOutcomeUnknown(Unavailable):
    """The store went away (or hung) while committing: the unit of work may or may not have been
    stored. The adapter settles the outcome as soon as the store answers again (it aborts the
    transaction if it was not applied), so a read made after that shows what really happened:
    reload before undoing anything the commit depended on. ``settled``, when the adapter gives
    it, returns once that is so (it waits for the store, without a time limit of its own)."""

    def __init__(
        self,
        message: str,
        *,
        settled: Callable[[], Awaitable[None]] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, metadata=metadata)
        self.settled = settled


class EventsRejected(ConnectorManagerError):
    """The event broker refused some events for good: sending them again cannot succeed (a
    message larger than the broker takes, one it finds invalid). ``rejected`` maps each one's
    ``OutboxMessage.seq`` to the reason (an error name, never the event's content); every other
    message of the batch was acknowledged."""

    code = "EVENTS_REJECTED"

    def __init__(self, message: str, *, rejected: Mapping[int, str], metadata: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, metadata=metadata)
        self.rejected: dict[int, str] = dict(rejected)


class BackendError(ConnectorManagerError):
    code = "BACKEND_ERROR"

    def __init__(self, message: str, *, status: int, metadata: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, metadata=metadata)
        self.status = status


class CryptoError(ConnectorManagerError):
    code = "DECRYPTION_FAILED"


class UnreadableRecord(CryptoError):
    """One stored record cannot be read: its sealed part does not decrypt, or what is stored
    does not decode (written by something else, damaged). Raised for that record only
    (``record_id``); batch reads leave such records out instead of failing as a whole."""

    code = "UNREADABLE_RECORD"

    def __init__(self, message: str, *, record_id: str, metadata: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, metadata=metadata)
        self.record_id = record_id
