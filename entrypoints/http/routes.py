"""The route table: every route of the HTTP API, declared once. The same declarations drive
authentication, input validation and the OpenAPI document, so they cannot drift apart."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from entrypoints import compat
from entrypoints.http import schemas
from entrypoints.http.auth import Access
from entrypoints.http.dispatch import RequestHandler, StateGetter, dispatch
from entrypoints.http.endpoint import PREFIX, Endpoint
from entrypoints.http.handlers.compat import google_credentials
from entrypoints.http.handlers.config import get_config, get_schema, put_config
from entrypoints.http.handlers.connectors import list_active, list_connectors, list_inactive, toggle
from entrypoints.http.handlers.filters import get_filters, save_filters
from entrypoints.http.handlers.health import health
from entrypoints.http.handlers.internal import get_credentials, recent_events, refresh_token, update_app_config
from entrypoints.http.handlers.oauth import get_token_from_code, oauth_authorize, oauth_callback, revoke_tokens
from entrypoints.settings import Settings

NAME = "{name}"

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "GET",
        f"{PREFIX}/",
        list_connectors,
        Access.ADMIN,
        "List every connector of the caller's org (catalog entries not yet configured included)",
        {"$ref": "#/components/schemas/ConnectorList"},
    ),
    # the same list without the trailing slash (served, not redirected)
    Endpoint(
        "GET",
        PREFIX,
        list_connectors,
        Access.ADMIN,
        "List every connector of the caller's org (the same as the path with a trailing slash)",
        {"$ref": "#/components/schemas/ConnectorList"},
        operation="list_connectors_without_slash",
    ),
    Endpoint(
        "GET",
        f"{PREFIX}/active",
        list_active,
        Access.USER,
        "List the org's enabled connectors",
        {"$ref": "#/components/schemas/ConnectorList"},
    ),
    Endpoint(
        "GET",
        f"{PREFIX}/inactive",
        list_inactive,
        Access.USER,
        "List the org's disabled connectors",
        {"$ref": "#/components/schemas/ConnectorList"},
    ),
    Endpoint(
        "GET",
        f"{PREFIX}/config/{NAME}",
        get_config,
        Access.ADMIN,
        "Read a connector's configuration (secrets masked as has<Field>)",
        {"$ref": "#/components/schemas/ConnectorConfig"},
        errors=(404,),
    ),
    Endpoint(
        "PUT",
        f"{PREFIX}/config/{NAME}",
        put_config,
        Access.ADMIN,
        "Replace a connector's configuration; secrets are write-only, omitted ones kept",
        schemas.CONFIG_SAVED,
        body=schemas.CONFIG_BODY,
        errors=(400, 404, 409, 413, 415),
    ),
    Endpoint(
        "GET",
        f"{PREFIX}/schema/{NAME}",
        get_schema,
        Access.ADMIN,
        "The JSON Schema of a connector's configuration",
        schemas.SCHEMA_VIEW,
        errors=(404,),
    ),
    Endpoint(
        "POST",
        f"{PREFIX}/toggle/{NAME}",
        toggle,
        Access.ADMIN,
        'Set a connector enabled or disabled ({"enabled": bool}), or flip it without a body'
        " (emits appEnabled/appDisabled when the state changes)",
        schemas.TOGGLE_VIEW,
        body=schemas.TOGGLE_BODY,
        errors=(400, 404, 409, 413, 415),
    ),
    Endpoint(
        "GET",
        f"{PREFIX}/{NAME}/oauth/authorize",
        oauth_authorize,
        Access.ADMIN,
        "Build the provider's authorization URL (state + PKCE kept server-side)",
        schemas.AUTHORIZE_VIEW,
        query=schemas.AUTHORIZE_QUERY,
        errors=(400, 404, 409),
        tag="oauth",
    ),
    Endpoint(
        "GET",
        f"{PREFIX}/{NAME}/oauth/callback",
        oauth_callback,
        Access.ADMIN,
        "Finish the authorization: exchange the code, store the tokens",
        schemas.CALLBACK_VIEW,
        query=schemas.CALLBACK_QUERY,
        errors=(400, 404, 409, 502, 503),
        tag="oauth",
    ),
    Endpoint(
        "POST",
        f"{PREFIX}/getTokenFromCode",
        get_token_from_code,
        Access.ADMIN,
        "Legacy Google Workspace code exchange (201 new connector, 200 existing)",
        {"$ref": "#/components/schemas/Connector"},
        body=schemas.TEMP_CODE_BODY,
        errors=(400, 403, 413, 415, 502, 503),
        tag="oauth",
    ),
    Endpoint(
        "POST",
        f"{PREFIX}/{NAME}/oauth/revoke",
        revoke_tokens,
        Access.ADMIN,
        "Revoke a connector's tokens at the provider and forget them (409 while a refresh holds the token)",
        schemas.TOGGLE_VIEW,
        errors=(404, 409),
        tag="oauth",
    ),
    Endpoint(
        "GET",
        f"{PREFIX}/filters/{NAME}",
        get_filters,
        Access.ADMIN,
        "The saved filter selection and the filters available",
        schemas.FILTERS_VIEW,
        errors=(404,),
    ),
    Endpoint(
        "POST",
        f"{PREFIX}/filters/{NAME}",
        save_filters,
        Access.ADMIN,
        "Save a filter selection (validated against the catalog)",
        schemas.FILTERS_VIEW,
        body=schemas.FILTERS_BODY,
        errors=(400, 404, 413, 415),
    ),
    Endpoint(
        "POST",
        f"{PREFIX}/internal/refreshIndividualConnectorToken",
        refresh_token,
        Access.SCOPED,
        "Refresh a connector's token now",
        schemas.MESSAGE,
        body=schemas.REFRESH_BODY,
        errors=(400, 404, 409, 502, 503),
        tag="internal",
    ),
    Endpoint(
        "GET",
        f"{PREFIX}/internal/credentials/{NAME}",
        get_credentials,
        Access.SCOPED,
        "A connector's credentials: an OAuth connector's fresh access token (refreshed first when due),"
        " any other connector's stored credentials (API token, service account); the scoped token's org only",
        schemas.CREDENTIALS_VIEW,
        query=schemas.CREDENTIALS_QUERY,
        errors=(400, 404, 409, 502, 503),
        tag="internal",
    ),
    Endpoint(
        "GET",
        f"{PREFIX}/internal/events",
        recent_events,
        Access.SCOPED,
        "Events of the outbox (for deployments without Kafka): the newest, or with after=<eventId> the"
        " ones stored after that event, oldest first (page on with next; never skips an event, may repeat"
        " the newest: dedupe on eventId)",
        schemas.EVENTS_VIEW,
        query=schemas.EVENTS_QUERY,
        errors=(400, 404),
        tag="internal",
    ),
    Endpoint(
        "POST",
        f"{PREFIX}/updateAppConfig",
        update_app_config,
        Access.SCOPED,
        "Reload the application configuration (no secret in the reply); service tokens not bound to an org only",
        schemas.RELOAD_VIEW,
        body={"type": "object"},
        tag="internal",
    ),
    Endpoint(
        "GET",
        "/api/v1/health",
        health,
        Access.PUBLIC,
        "Health of the service and each dependency (503 when a required one is down)",
        {"$ref": "#/components/schemas/Health"},
        errors=(503,),
        tag="health",
    ),
)


#: the routes of the compatibility profile (``compat = "pipeshub"``), served only under it
COMPAT_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "GET",
        compat.GOOGLE_CREDENTIALS_PATH,
        google_credentials,
        Access.SCOPED,
        "The existing service's credentials route: an individual Google account's access token"
        " ({access_token, access_token_expiry_time}), refreshed first when due",
        schemas.LEGACY_CREDENTIALS_VIEW,
        errors=(400, 404, 409, 502, 503),
        tag="internal",
    ),
)


def endpoints_for(settings: Settings) -> tuple[Endpoint, ...]:
    """Every route these settings serve."""
    return ENDPOINTS + COMPAT_ENDPOINTS if compat.enabled(settings) else ENDPOINTS


def routes(state_getter: StateGetter, endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> list[Route]:
    """One Starlette route per path, whatever its methods: a method the path does not serve gets
    405 with every method it does serve in ``Allow`` (one route per method named only its own)."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for endpoint in endpoints:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint
    mounted = []
    for path, methods in by_path.items():
        handlers = {method: dispatch(e, state_getter) for method, e in methods.items()}
        name = "|".join(e.operation_id for e in methods.values())
        mounted.append(Route(path, _by_method(handlers), methods=list(handlers), name=name))
    return mounted


def _by_method(handlers: dict[str, RequestHandler]) -> RequestHandler:
    async def run(request: Request) -> Response:
        # Starlette answered 405 already for a method not listed; HEAD is served as GET.
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return run
