"""A route's declaration (:class:`Endpoint`) and what its handler gets (:class:`Call`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from attrs import define, frozen
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from connector_core.ports.iam import Principal
from entrypoints.http.auth import Access
from entrypoints.http.state import ApiState

PREFIX = "/api/v1/connectors"


@define
class Call:
    """What a handler gets: the request, who called, and validated input."""

    request: Request
    app: ApiState  # container and services (swapped as a whole on reload)
    principal: Principal | None
    params: Mapping[str, str]
    query: dict[str, Any]
    body: dict[str, Any]

    @property
    def org_id(self) -> str:
        assert self.principal is not None and self.principal.org_id is not None
        return self.principal.org_id

    @property
    def user_id(self) -> str | None:
        return None if self.principal is None else self.principal.user_id

    @property
    def signed_in_user(self) -> str:
        """The user of a user token (every USER and ADMIN route has one)."""
        assert self.principal is not None and self.principal.user_id is not None
        return self.principal.user_id


Handler = Callable[[Call], Awaitable[Response]]


@frozen
class Endpoint:
    """One route: the same declaration drives authentication, input validation and the
    OpenAPI document, so they cannot drift apart."""

    method: str
    path: str
    handler: Handler
    access: Access
    summary: str
    response: Mapping[str, Any]
    status: int = 200
    body: Mapping[str, Any] | None = None
    query: Mapping[str, Any] | None = None
    errors: tuple[int, ...] = ()
    tag: str = "connectors"
    #: the OpenAPI operationId when one handler serves two paths (default: the handler's name)
    operation: str | None = None

    @property
    def operation_id(self) -> str:
        return self.operation or self.handler.__name__.strip("_")


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)
