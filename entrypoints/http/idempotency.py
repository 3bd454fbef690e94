"""``Idempotency-Key`` on state-changing routes: a retry gets the first request's answer
instead of acting twice.

The key is claimed per org before the handler runs (a second request with the key while the
first still runs gets ``409 IDEMPOTENCY_KEY_IN_USE``; the same key with another method, path or
body gets ``409 IDEMPOTENCY_KEY_REUSED``). The answer is kept for a day and replayed with
``Idempotent-Replayed: true``:

- a success (2xx) is kept;
- a server error (5xx) is kept too: its outcome is not known (the change may have been saved,
  as when a cache could not be invalidated after the commit), so the key never acts again;
  read the current state, then use a new key;
- a refusal (4xx: not configured, not found, a concurrent change) changed nothing, so the claim
  is released and a retry with the same key runs again.

The request is kept as an HMAC of method, path, query and body, never the body itself."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta

from starlette.responses import Response

from connector_core.errors import Conflict, ConnectorManagerError, ValidationError
from connector_core.ports.idempotency import StoredAnswer
from entrypoints.http.endpoint import Call
from entrypoints.http.errors import error_response, from_exception, status_for

log = logging.getLogger("connector_manager.http")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
#: how long an answer is kept
KEEP = timedelta(days=1)
#: how long a claim holds while its request runs (a process that died lets go after this)
HOLD = timedelta(seconds=60)
_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
#: the org of callers bound to none (unbound service tokens)
_NO_ORG = "*"


class IdempotencyKeyReused(Conflict):
    """The key was used for another request (method, path or body)."""

    code = "IDEMPOTENCY_KEY_REUSED"


class IdempotencyKeyInUse(Conflict):
    code = "IDEMPOTENCY_KEY_IN_USE"


def idempotency_key(call: Call) -> str | None:
    """The request's key, or None; :class:`ValidationError` when it is malformed."""
    key = call.request.headers.get(HEADER)
    if key is None:
        return None
    if not _VALID_KEY.match(key):
        raise ValidationError.for_field(HEADER, "must be 1 to 255 visible ASCII characters")
    return key


def _fingerprint(call: Call) -> str:
    material = json.dumps(
        [call.request.method, call.request.url.path, call.query, call.body], sort_keys=True, separators=(",", ":")
    )
    secret = call.app.container.service_secrets.jwt_secret.encode()
    return hmac.new(secret, b"idempotency\x00" + material.encode(), hashlib.sha256).hexdigest()


async def run_once(call: Call, key: str, handler: Callable[[Call], Awaitable[Response]]) -> Response:
    """Run ``handler`` under ``key`` (see the module docstring), or replay its kept answer."""
    container = call.app.container
    store = container.storage.idempotency
    org = (call.principal.org_id if call.principal else None) or _NO_ORG
    fingerprint = _fingerprint(call)
    claim_id = secrets.token_hex(12)
    now = container.ctx.clock.now()
    found = await store.claim(org, key, fingerprint=fingerprint, claim_id=claim_id, now=now, until=now + HOLD)
    if found is not None:
        if found.answer is None:
            raise IdempotencyKeyInUse(f"a request with this {HEADER} is still running; retry in a moment")
        if not hmac.compare_digest(found.fingerprint, fingerprint):
            raise IdempotencyKeyReused(
                f"this {HEADER} was used for another request (method, path or body); use a new key",
                metadata={"errors": [{"path": HEADER, "message": "was used for another request"}]},
            )
        return Response(
            found.answer.body,
            status_code=found.answer.status,
            media_type="application/json",
            headers={REPLAYED_HEADER: "true"},
        )
    try:
        response = await handler(call)
    except ConnectorManagerError as exc:
        if status_for(exc) >= 500:
            await _keep(call, org, key, claim_id, from_exception(exc))
        else:
            await _release(call, org, key, claim_id)
        raise
    except Exception:
        await _keep(call, org, key, claim_id, error_response(500, "INTERNAL_ERROR", "unexpected server error"))
        raise
    except BaseException:
        await _release(call, org, key, claim_id)
        raise
    if 400 <= response.status_code < 500:
        await _release(call, org, key, claim_id)
    else:
        await _keep(call, org, key, claim_id, response)
    return response


async def _keep(call: Call, org: str, key: str, claim_id: str, response: Response) -> None:
    container = call.app.container
    answer = StoredAnswer(response.status_code, bytes(response.body))
    try:
        await container.storage.idempotency.complete(
            org, key, claim_id=claim_id, answer=answer, until=container.ctx.clock.now() + KEEP
        )
    except ConnectorManagerError as exc:  # the answer stands; a retry within HOLD gets 409, then runs again
        log.warning("could not keep the answer for an %s (%s)", HEADER, exc.message)


async def _release(call: Call, org: str, key: str, claim_id: str) -> None:
    with contextlib.suppress(ConnectorManagerError):  # it expires after HOLD anyway
        await call.app.container.storage.idempotency.release(org, key, claim_id=claim_id)
