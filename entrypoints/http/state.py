"""What a request works with: one generation of the wired application."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jsonschema import Draft202012Validator

from connector_core.catalog import thaw
from entrypoints.bootstrap import Container
from entrypoints.http.validation import FORMATS

if TYPE_CHECKING:
    from entrypoints.http.app import Reloader


class ApiState:
    """What a request works with. Replaced as a whole on reload; a request keeps the one it
    started with, so nothing in flight sees half a configuration."""

    def __init__(self, container: Container, reloader: Reloader | None = None) -> None:
        self.container = container
        self._reloader = reloader
        self._validators: dict[str, Draft202012Validator] = {}
        self.health_timeout = 2.0

    def config_validator(self, key: str) -> Draft202012Validator:
        found = self._validators.get(key)
        if found is None:
            entry = self.container.catalog.get(key)
            found = Draft202012Validator(thaw(entry.config_schema), format_checker=FORMATS)
            self._validators[key] = found
        return found

    async def reload(self) -> tuple[int, list[str]]:
        holder = self.container.holder
        assert holder is not None, "a served container always has its holder"
        return await holder.reload()
