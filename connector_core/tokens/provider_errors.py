"""Token endpoint failures, classified into the errors the lifecycle acts on."""

from __future__ import annotations

from connector_core.errors import ProviderError, ReauthorizationRequired, RetryableProviderError

__all__ = ["REAUTH_ERROR_CODES", "classify_token_error"]

#: OAuth ``error`` codes after which retrying cannot help: a person must authorize again.
REAUTH_ERROR_CODES = frozenset(
    {
        "invalid_grant",
        "unauthorized_client",
        "invalid_client",
        "access_denied",
        "token_revoked",
        # Microsoft identity platform: a person must sign in / consent again
        "interaction_required",
        "consent_required",
        "login_required",
        # Slack
        "invalid_refresh_token",
    }
)


def classify_token_error(
    status: int | None, error_code: str | None, *, retry_after: float | None = None
) -> ProviderError:
    """Turn a token endpoint failure into the error the lifecycle acts on.

    Network failure (``status`` None), 5xx and 429 are retryable; ``invalid_grant`` and its kin
    need re-authorization; anything else is a plain :class:`ProviderError`.
    """
    label = error_code or (f"HTTP {status}" if status else "network error")
    if error_code in REAUTH_ERROR_CODES:
        return ReauthorizationRequired(f"provider refused the grant: {label}", status=status, error_code=error_code)
    if status is None or status >= 500 or status == 429:
        return RetryableProviderError(
            f"provider unavailable: {label}",
            status=status,
            error_code=error_code,
            retry_after=retry_after,
        )
    return ProviderError(f"provider error: {label}", status=status, error_code=error_code)
