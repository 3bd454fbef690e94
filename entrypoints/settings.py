"""Settings: defaults, then a TOML file, then environment variables (``CM_*``) win.

Every setting is listed in docs/configuration.md. A bad value fails start-up with one line
naming the setting.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from attrs import define, evolve, field

from connector_core.errors import ValidationError


class SettingsError(ValidationError):
    """A setting is missing, malformed or points at something unreachable."""


@define(frozen=True)
class Settings:
    data_dir: Path = Path(".data")
    host: str = "127.0.0.1"
    port: int = 8088
    #: where callers reach this service (used in event routes); default http://host:port
    public_url: str | None = None
    storage: str = "sqlite"  # sqlite | memory | mongo
    secrets: str = "sqlite"  # sqlite | memory | etcd  (encrypted whatever the choice)
    events: str = "outbox"  # outbox (kept, readable at /internal/events) | kafka
    cache: str = "none"  # none | memory | redis
    locks: str = "local"  # local (the storage's own leases) | redis | etcd
    # connection strings may carry credentials: never in a repr
    mongo_url: str = field(default="mongodb://127.0.0.1:27017/?replicaSet=rs0", repr=False)
    mongo_database: str = "connector_manager"
    mongo_timeout_seconds: float = 2.0
    etcd_endpoint: str = "127.0.0.1:2379"
    etcd_user: str | None = None
    etcd_password: str | None = field(default=None, repr=False)
    etcd_timeout_seconds: float = 2.0
    #: a prefix in front of every key this deployment writes (several deployments on one etcd)
    etcd_namespace: str = ""
    #: watch this etcd key for configuration changes made by other processes (reload on change)
    etcd_config_key: str = "/services/connectorManager/config"
    kafka_bootstrap: str = "127.0.0.1:9092"
    #: extra librdkafka settings (security.protocol, sasl.*, ...)
    kafka_client_config: Mapping[str, str] = field(factory=dict, repr=False)
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    cache_ttl_seconds: float = 30.0
    relay_interval_seconds: float = 0.5
    #: events kept in the outbox (the newest; with Kafka only published ones are ever removed)
    outbox_keep: int = 100_000
    outbox_prune_interval_seconds: float = 3600.0
    backend_timeout_seconds: float = 10.0
    log_level: str = "info"
    #: OAuth: origins a redirect URI may point at (scheme://host[:port]); empty = localhost only
    oauth_allowed_origins: tuple[str, ...] = ()
    oauth_redirect_path: str = "/connectors/oauth/callback/{connector}"
    oauth_post_auth_path: str = "/connectors/{connector}"
    oauth_state_ttl_seconds: int = 600
    #: redirect URI the front end used for the legacy POST /getTokenFromCode (e.g. "postmessage")
    oauth_legacy_redirect_uri: str | None = None
    oauth_http_timeout_seconds: float = 10.0
    refresh_interval_seconds: float = 30.0
    refresh_margin_seconds: int = 600
    refresh_batch_size: int = 100
    refresh_concurrency: int = 8
    run_refresher: bool = True
    backend_url: str | None = None
    custom_providers: tuple[Mapping[str, Any], ...] = field(factory=tuple)
    config_file: Path | None = None

    @property
    def database_path(self) -> Path:
        return self.data_dir / "connector-manager.db"

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


_ENV_PREFIX = "CM_"
_CHOICES = {
    "storage": {"sqlite", "memory", "mongo"},
    "secrets": {"sqlite", "memory", "etcd"},
    "events": {"outbox", "kafka"},
    "cache": {"none", "memory", "redis"},
    "locks": {"local", "redis", "etcd"},
    "log_level": {"debug", "info", "warning", "error"},
}


def _coerce(name: str, raw: Any, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError("expected true or false")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, Path) or name in {"data_dir", "config_file"}:
            return Path(str(raw)).expanduser()
        if isinstance(default, tuple) and name != "custom_providers":
            if isinstance(raw, str):
                return tuple(p.strip() for p in raw.split(",") if p.strip())
            return tuple(str(p) for p in raw)
        if name == "custom_providers":
            return tuple(dict(p) for p in raw)
        if name == "kafka_client_config":
            if isinstance(raw, str):
                pairs = [p.split("=", 1) for p in raw.split(",") if p.strip()]
                return {k.strip(): v.strip() for k, v in pairs}
            return {str(k): str(v) for k, v in dict(raw).items()}
        return None if raw is None else str(raw)
    except (TypeError, ValueError) as exc:
        raise SettingsError.for_field(name, f"invalid value ({exc})") from None


def load_settings(
    config_file: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults ← TOML file ← ``CM_*`` environment ← explicit overrides (CLI flags)."""
    env = os.environ if env is None else env
    base = Settings()
    values: dict[str, Any] = {}
    path = config_file or env.get("CM_CONFIG_FILE")
    if path:
        file = Path(path)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SettingsError.for_field("config_file", f"cannot read {file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError.for_field("config_file", f"{file} is not valid TOML: {exc}") from None
        values.update(_flatten(data))
        values["config_file"] = file
    known = {f.name: f for f in attrs.fields(Settings)}
    for name in known:
        key = _ENV_PREFIX + name.upper()
        if key in env and name != "custom_providers":  # providers come from the file
            values[name] = env[key]
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise SettingsError.for_field(unknown[0], "unknown setting")
    typed = {n: _coerce(n, v, getattr(base, n)) for n, v in values.items()}
    settings = evolve(base, **typed)
    for name, allowed in _CHOICES.items():
        if getattr(settings, name) not in allowed:
            raise SettingsError.for_field(
                name,
                f"must be one of {', '.join(sorted(allowed))}, got {getattr(settings, name)!r}",
            )
    host, _, etcd_port = settings.etcd_endpoint.rpartition(":")
    if not host or not etcd_port.isdigit() or not 0 < int(etcd_port) < 65536:
        raise SettingsError.for_field("etcd_endpoint", "must be host:port")
    if not 0 < settings.port < 65536:
        raise SettingsError.for_field("port", "must be between 1 and 65535")
    return settings


def _flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """``[oauth] allowed_origins = [...]`` → ``oauth_allowed_origins``; ``[[providers]]`` →
    ``custom_providers``; ``[server] host`` → ``host``."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key == "providers":
            flat["custom_providers"] = value
        elif key == "kafka" and isinstance(value, Mapping) and "client_config" in value:
            flat.update({f"kafka_{k}": v for k, v in value.items()})
        elif key in {"server", "adapters"} and isinstance(value, Mapping):
            flat.update(value)
        elif isinstance(value, Mapping):
            for sub, v in value.items():
                flat[f"{key}_{sub}"] = v
        else:
            flat[key] = value
    return flat


def apply_overrides(settings: Settings, values: Mapping[str, Any]) -> Settings:
    """``settings`` with ``values`` (setting name → raw value) coerced and applied."""
    known = {f.name for f in attrs.fields(Settings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingsError.for_field(unknown[0], "unknown setting")
    typed = {n: _coerce(n, v, getattr(settings, n)) for n, v in values.items()}
    return evolve(settings, **typed)
