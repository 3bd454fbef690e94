"""The backend connector service: an HTTP client that forwards the connector routes."""

from __future__ import annotations

from adapters.factories.sections import BackendSettings
from adapters.http.backend_client import HttpxBackendClient
from connector_core.errors import ValidationError


async def open_backend(settings: BackendSettings) -> HttpxBackendClient:
    """A client for the service at ``settings.url``. Start-up does not wait for it: the service
    may start later, and its health is reported by ``GET /health``."""
    try:
        return HttpxBackendClient(settings.url, timeout=settings.timeout_seconds)
    except ValueError as exc:
        raise ValidationError.for_field("url", str(exc)) from None
