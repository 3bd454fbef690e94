"""What every console page shares: the request's context (state, session, signed-in admin),
rendering with the security headers, error pages, and the guard each handler runs behind
(sign-in, admin check, CSRF check on every state-changing form)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from attrs import define, field
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from connector_core.errors import ConnectorManagerError, Unavailable
from connector_core.ports.iam import Principal
from entrypoints.console.session import COOKIE, Session, csrf_matches, decode, encode
from entrypoints.console.signouts import generation
from entrypoints.http.dispatch import HTTP_LAYER_STATUS
from entrypoints.http.errors import status_for
from entrypoints.http.state import ApiState
from entrypoints.http.validation import read_body
from entrypoints.observability.request_context import note_org

log = logging.getLogger("connector_manager.console")

BASE = "/admin"
#: a console form is small; the largest field is a pasted service-account key (64 KiB)
MAX_FORM_BYTES = 256 * 1024
_HEADERS = {
    # no inline script or style, nothing from elsewhere, never framed
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # the one-time link and the OAuth callback carry secrets in their URL: never in a Referer
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

TEMPLATES = Environment(
    loader=PackageLoader("entrypoints.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def relative(moment: datetime, now: int) -> str:
    """ "in 55 min", "3 h ago": how far ``moment`` is from ``now`` (epoch seconds)."""
    seconds = int(moment.timestamp()) - now
    ahead, span = seconds >= 0, abs(seconds)
    if span < 5:
        return "just now"
    if span < 60:
        text = f"{span} s"
    elif span < 3600:
        text = f"{span // 60} min"
    elif span < 2 * 86400:
        text = f"{span // 3600} h {span % 3600 // 60} min"
    else:
        text = f"{span // 86400} days"
    return f"in {text}" if ahead else f"{text} ago"


TEMPLATES.filters["relative"] = relative

StateGetter = Callable[[], ApiState]


class FormError(ConnectorManagerError):
    """A form could not be read (too large, not a form)."""

    code = "BAD_FORM"


@define
class Page:
    """One console request: the application state it started with, its session, the form it
    posted, and (behind the guard) the signed-in admin."""

    request: Request
    state: ApiState
    session: Session | None
    now: int
    form: list[tuple[str, str]] = field(factory=list)
    #: set when the response must carry a new session cookie (None: leave it as it is)
    new_session: Session | None = None
    clear_session: bool = False
    #: on a page for anyone (sign-in, sign-out): the signed-in session the cookie carries when
    #: whether its user signed out could not be read; the request runs as anonymous meanwhile
    unchecked: Session | None = None
    #: the cookie's session was ended by a sign-out since it began (maybe in another browser)
    ended: bool = False

    @property
    def principal(self) -> Principal:
        assert self.session is not None and self.session.signed_in
        return self.session.principal

    @property
    def org_id(self) -> str:
        org = self.principal.org_id
        assert org is not None
        return org

    @property
    def user_id(self) -> str:
        user = self.principal.user_id
        assert user is not None
        return user

    @property
    def csrf(self) -> str:
        """The CSRF token forms rendered now must carry (a fresh anonymous session's if needed)."""
        session = self.new_session or self.session
        if session is None:
            session = self.new_session = Session.anonymous(self.now)
        return session.csrf

    def value(self, name: str, default: str = "") -> str:
        return next((v for k, v in self.form if k == name), default)

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.form if k == name]

    def sign_in(self, session: Session) -> None:
        self.new_session = session

    def sign_out(self) -> None:
        self.clear_session = True

    # -- responses ---------------------------------------------------------------------------

    def render(self, template: str, status: int = 200, **values: Any) -> Response:
        signed_in = self.session is not None and self.session.signed_in and not self.clear_session
        context = {
            "base": BASE,
            "csrf": self.csrf,
            "who": self.session if signed_in else None,
            "notice": None,
            "nav": None,
            **values,
        }
        html = TEMPLATES.get_template(template).render(context)
        return self.finish(HTMLResponse(html, status_code=status))

    def redirect(self, path: str) -> Response:
        return self.finish(RedirectResponse(path, status_code=303))

    def error(self, status: int, title: str, message: str) -> Response:
        return self.render("error.html", status=status, title=title, message=message)

    def finish(self, response: Response) -> Response:
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        # https as the app sees it, or as browsers reach it: behind a TLS-terminating proxy the
        # app sees http (X-Forwarded-Proto is trusted only from 127.0.0.1), public_url says https
        public_url = self.state.container.settings.base_url
        secure = self.request.url.scheme == "https" or public_url.lower().startswith("https:")
        if self.clear_session:
            response.delete_cookie(COOKIE, path=BASE, secure=secure, httponly=True, samesite="lax")
        elif self.new_session is not None:
            secret = self.state.container.service_secrets.cookie_secret
            response.set_cookie(
                COOKIE,
                encode(self.new_session, secret),
                max_age=max(1, self.new_session.expires_at - self.now),
                path=BASE,
                secure=secure,
                httponly=True,
                # Lax, not Strict: the provider's redirect back to the callback is a top-level
                # navigation from another site and must carry the session
                samesite="lax",
            )
        return response


Handler = Callable[[Page], Awaitable[Response]]


async def read_form(request: Request, within_seconds: float) -> list[tuple[str, str]]:
    """An ``application/x-www-form-urlencoded`` body (what the console's forms send), read as
    an API body is (:func:`read_body`): at most :data:`MAX_FORM_BYTES`, a larger
    ``Content-Length`` refused unread (413), within ``within_seconds`` (else 408: the form is
    read before the CSRF and admin checks, so a client trickling it must not hold the
    connection). Anything else is an empty form, which no CSRF check passes."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return []
    body = await read_body(request, within_seconds, MAX_FORM_BYTES)
    try:
        text = body.decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=1000)
    except (UnicodeDecodeError, ValueError):
        raise FormError("the form is not valid UTF-8 form data") from None


def page(state_getter: StateGetter, handler: Handler, *, admin: bool = True, form: bool = False) -> Any:
    """A Starlette endpoint running ``handler`` behind the guard: with ``admin``, a signed-in
    admin of their org is required (else the sign-in page, or a 403 page); with ``form``,
    the posted form is read and its CSRF token must be the session's (else a 403 page). A form
    posted with a session a sign-out has ended (in another browser, say) clears the cookie and
    goes to the sign-in page: there is no session left to protect, and the handler never runs."""

    async def endpoint(request: Request) -> Response:
        state = state_getter()
        now = int(time.time())
        secret = state.container.service_secrets.cookie_secret
        p = Page(request, state, decode(request.cookies.get(COOKIE), secret, now), now)
        if p.session is not None and p.session.signed_in:
            note_org(p.session.principal.org_id)  # for the request's access line
        try:
            if not secret:
                return p.error(503, "Console unavailable", "The service has no cookie secret to sign sessions with.")
            if p.session is not None and p.session.signed_in:
                refused = await _check_signed_out(p, admin=admin)
                if refused is not None:
                    return refused
            if form:
                p.form = await read_form(request, state.body_timeout)
                if p.ended:  # no session left to protect, nothing to do: sign-out is done already
                    p.sign_out()
                    return p.redirect(f"{BASE}/signin")
                if not csrf_matches(p.session, p.value("csrf")):
                    return p.error(
                        403,
                        "Form refused",
                        "This form did not come from this console session (the CSRF check failed). "
                        "Reload the page and send it again.",
                    )
            if admin:
                refused = await _require_admin(p)
                if refused is not None:
                    return refused
            return await handler(p)
        except FormError as exc:
            return p.error(400, "Form refused", exc.message)
        except ConnectorManagerError as exc:
            status = HTTP_LAYER_STATUS.get(type(exc)) or status_for(exc)
            if isinstance(exc, Unavailable):
                log.warning("console: dependency unavailable on %s: %s", request.url.path, exc.message)
            response = p.error(status, _TITLES.get(status, "Refused"), exc.message)
            if status in (408, 413):  # as the API: the rest of an unread body cannot be skipped
                response.headers["Connection"] = "close"
            return response
        except Exception:
            log.exception("console: unexpected error on %s %s", request.method, request.url.path)
            return p.finish(HTMLResponse(_FAILED, status_code=500))

    endpoint.__name__ = handler.__name__
    return endpoint


#: the page of an unexpected error (plain: rendering may be what failed)
_FAILED = (
    "<!doctype html><title>Something went wrong</title><h1>Something went wrong</h1>"
    f'<p>An unexpected error happened; the service log has details. <a href="{BASE}/">Back to the console</a></p>'
)

_TITLES: Mapping[int, str] = {
    400: "Not accepted",
    401: "Sign in again",
    403: "Not allowed",
    404: "Not found",
    408: "The form came too slowly",
    409: "Not possible now",
    413: "The form is too large",
    502: "The provider failed",
    503: "A dependency is unavailable",
}


async def _check_signed_out(p: Page, *, admin: bool) -> Response | None:
    """Drop the session when its user signed out after it began, maybe in another browser (see
    :mod:`signouts`). When that cannot be read (the secret store is unavailable), a signed-in
    page is refused with a 503 page: a cookie that may have been signed out never gets
    through. A page for anyone (``admin=False``: sign-in, sign-out) runs as anonymous instead,
    with the session's CSRF token (its forms still work) and its cookie left as it is."""
    session = p.session
    assert session is not None and session.signed_in
    try:
        secret = p.state.container.service_secrets.cookie_secret
        current = await generation(p.state.container.secrets_store, secret, p.org_id, p.user_id)
    except Unavailable as exc:
        log.warning("console: cannot read the user's sign-outs on %s: %s", p.request.url.path, exc.message)
        p.session = Session(csrf=session.csrf, expires_at=session.expires_at)
        if admin:
            return p.render("unchecked.html", status=503)
        p.unchecked = session
        return None
    if session.generation < current:
        p.session, p.ended = None, True  # the user signed out since (maybe elsewhere): no session
    return None


async def _require_admin(p: Page) -> Response | None:
    if p.session is None or not p.session.signed_in:
        return p.redirect(f"{BASE}/signin")
    if not await p.state.container.iam.is_admin(p.principal):
        return not_admin(p, p.principal)
    return None


def not_admin(p: Page, principal: Principal) -> Response:
    p.sign_out()
    account = principal.email or principal.user_id or "this account"
    return p.render("refused.html", status=403, account=account, org=principal.org_id)
