"""What a request works with: one generation of the wired application."""

from __future__ import annotations

from jsonschema import Draft202012Validator

from connector_core.catalog import thaw
from entrypoints.bootstrap import Container
from entrypoints.http.connector_schemas import filters_body
from entrypoints.http.response_cache import ResponseCache
from entrypoints.http.validation import FORMATS

#: a body of at most 1 MiB arrives well within this on any working connection
DEFAULT_BODY_TIMEOUT_SECONDS = 10.0


class ApiState:
    """What a request works with. Replaced as a whole on reload; a request keeps the one it
    started with, so nothing in flight sees half a configuration."""

    def __init__(self, container: Container, *, body_timeout: float = DEFAULT_BODY_TIMEOUT_SECONDS) -> None:
        self.container = container
        self._validators: dict[str, Draft202012Validator] = {}
        self.health_timeout = 2.0
        #: seconds a route waits for the whole request body (slow clients get 408)
        self.body_timeout = body_timeout
        stamp = container.storage.stamp
        #: the hot reads' finished answers, on a store that can tell when they are outdated
        self.responses = (
            # the service's clock (a test's manual one too) ends the 1 s an answer with
            # time-derived fields (a refresh token's warning) may be served again
            ResponseCache(stamp, clock=lambda: container.ctx.clock.now().timestamp())
            if stamp is not None and container.backend is None
            else None
        )

    def config_validator(self, key: str) -> Draft202012Validator:
        found = self._validators.get(key)
        if found is None:
            entry = self.container.catalog.get(key)
            found = Draft202012Validator(thaw(entry.config_schema), format_checker=FORMATS)
            self._validators[key] = found
        return found

    def filters_validator(self, key: str) -> Draft202012Validator:
        """The connector's filter body (:func:`connector_schemas.filters_body`), as documented."""
        found = self._validators.get(f"filters:{key}")
        if found is None:
            found = Draft202012Validator(filters_body(self.container.catalog.get(key)), format_checker=FORMATS)
            self._validators[f"filters:{key}"] = found
        return found

    async def reload(self) -> tuple[int, list[str]]:
        holder = self.container.holder
        assert holder is not None, "a served container always has its holder"
        return await holder.reload()
