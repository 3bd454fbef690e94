"""Settings: defaults, then a TOML file, then environment variables (``CM_*``) win.

Every setting is listed in docs/configuration.md. The raw values (TOML values, environment
strings, CLI flags) are structured by one cattrs converter into :class:`Settings`, whose types
are the rules: ``Literal`` choices, ranges as validators. A bad value fails start-up with one
line naming the setting.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
from attrs import field, frozen
from cattrs.errors import ClassValidationError

from adapters.factories.sections import (
    BackendSettings,
    EtcdSettings,
    EtcdTlsFiles,
    KafkaSettings,
    MongoSettings,
    RedisSettings,
    SQLiteSettings,
    UserGroupsIamSettings,
)
from adapters.health import START_UP_TIMEOUT_SECONDS
from connector_core.errors import ValidationError
from entrypoints.setting_urls import HTTP_SCHEMES, MONGO_SCHEMES, REDIS_SCHEMES, url_problem
from entrypoints.setting_values import make_settings_converter


class SettingsError(ValidationError):
    """A setting is missing, malformed or points at something unreachable."""


# -- ranges: a validator names the setting it refuses -------------------------------------------


def _at_least(low: int) -> Callable[[Any, attrs.Attribute[Any], float], None]:
    def check(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
        if value < low:
            raise SettingsError.for_field(attribute.name, f"must be at least {low}, got {value}")

    return check


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise SettingsError.for_field(attribute.name, f"must be greater than 0, got {value}")


def _port(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 0 < value < 65536:
        raise SettingsError.for_field(attribute.name, "must be between 1 and 65535")


def split_host_port(value: str) -> tuple[str, int] | None:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if "@" in host or "/" in host:  # user info or a URL: credentials have settings of their own
        return None
    return host.strip("[]"), int(port)


def _url(
    schemes: tuple[str, ...], *, multi_host: bool = False
) -> Callable[[Any, attrs.Attribute[Any], str | None], None]:
    # the value may carry a password: the error says what is wrong, never the value
    def check(_: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
        problem = None if value is None else url_problem(value, schemes, multi_host=multi_host)
        if problem is not None:
            raise SettingsError.for_field(attribute.name, problem)

    return check


def _host_port(_: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and split_host_port(value) is None:
        raise SettingsError.for_field(attribute.name, "must be host:port")


def _replication_factor(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if value != -1 and value < 1:
        raise SettingsError.for_field(attribute.name, f"must be -1 (the broker's default) or at least 1, got {value}")


def _host_ports(_: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for number, item in enumerate(value, start=1):
        if split_host_port(item) is None:  # not repeated: a mistyped one may carry a password
            raise SettingsError.for_field(attribute.name, f"each must be host:port (item {number} is not)")


@frozen
class Settings:
    data_dir: Path = Path(".data")
    host: str = "127.0.0.1"
    port: int = field(default=8088, validator=_port)
    #: where callers reach this service (used in event routes); default http://host:port
    public_url: str | None = None
    storage: Literal["sqlite", "memory", "mongo"] = "sqlite"
    #: the key-value store of secrets (encrypted whatever the choice)
    secrets: Literal["sqlite", "memory", "etcd"] = "sqlite"
    #: outbox: kept, readable at /internal/events; kafka: a relay publishes them
    events: Literal["outbox", "kafka"] = "outbox"
    cache: Literal["none", "memory", "redis"] = "none"
    #: local: the storage's own leases
    locks: Literal["local", "redis", "etcd"] = "local"
    # connection strings may carry credentials: never in a repr
    mongo_url: str = field(
        default="mongodb://127.0.0.1:27017/?replicaSet=rs0", repr=False, validator=_url(MONGO_SCHEMES, multi_host=True)
    )
    mongo_database: str = "connector_manager"
    mongo_timeout_seconds: float = field(default=2.0, validator=_positive)
    #: one member (the older setting); ``etcd_endpoints`` lists a cluster's members
    etcd_endpoint: str | None = field(default=None, validator=_host_port)
    etcd_endpoints: tuple[str, ...] = field(default=(), validator=_host_ports)
    etcd_user: str | None = None
    etcd_password: str | None = field(default=None, repr=False)
    etcd_timeout_seconds: float = field(default=2.0, validator=_positive)
    #: how long one member may take before a call moves on to the next member
    etcd_member_timeout_seconds: float = field(default=0.5, validator=_positive)
    #: TLS to etcd (on as well when a CA or client certificate file is given)
    etcd_tls: bool = False
    etcd_ca_file: Path | None = None
    etcd_cert_file: Path | None = None
    etcd_key_file: Path | None = None
    #: a prefix in front of every key this deployment writes (several deployments on one etcd)
    etcd_namespace: str = ""
    #: watch this etcd key for configuration changes made by other processes (reload on change)
    etcd_config_key: str = "/services/connectorManager/config"
    #: the brokers to bootstrap from (a list, or comma-separated): any one that answers will do
    kafka_bootstrap: tuple[str, ...] = field(default=("127.0.0.1:9092",), validator=_host_ports)
    #: the replication factor of the topics this service creates; -1: the broker's default
    kafka_replication_factor: int = field(default=-1, validator=_replication_factor)
    #: min.insync.replicas of the topics this service creates; unset: the broker's default
    kafka_min_insync_replicas: int | None = field(default=None, validator=attrs.validators.optional(_at_least(1)))
    #: extra librdkafka settings (security.protocol, sasl.*, ...)
    kafka_client_config: Mapping[str, str] = field(factory=dict, repr=False)
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False, validator=_url(REDIS_SCHEMES))
    #: Redis Sentinels (host:port) naming the primary; then redis_url gives credentials and db only
    redis_sentinels: tuple[str, ...] = field(default=(), validator=_host_ports)
    redis_sentinel_master: str = "mymaster"
    redis_sentinel_password: str | None = field(default=None, repr=False)
    #: replicas that must confirm a lease or a cache invalidation; default 1 with Sentinels, else 0
    redis_replica_acks: int | None = field(default=None, validator=attrs.validators.optional(_at_least(0)))
    cache_ttl_seconds: float = field(default=30.0, validator=_positive)
    relay_interval_seconds: float = field(default=0.5, validator=_positive)
    #: events kept in the outbox (the newest; with Kafka only published ones are ever removed)
    outbox_keep: int = field(default=100_000, validator=_at_least(0))
    outbox_prune_interval_seconds: float = field(default=3600.0, validator=_positive)
    backend_url: str | None = field(default=None, repr=False, validator=_url(HTTP_SCHEMES))
    backend_timeout_seconds: float = field(default=10.0, validator=_positive)
    #: how long start-up waits for each server it needs (MongoDB, etcd, Redis, Kafka) to answer,
    #: trying again while it does not (a failover under way), before it gives up
    start_up_timeout_seconds: float = field(default=START_UP_TIMEOUT_SECONDS, validator=_positive)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: auto: JSON lines when stderr is not a terminal, readable lines on a terminal
    log_format: Literal["auto", "json", "console"] = "auto"
    #: ``worker``: serve its Prometheus metrics at http://host:metrics_port/metrics (one port per
    #: worker); unset: the worker serves none. ``serve`` has them at /metrics on its own port.
    metrics_port: int | None = field(default=None, validator=attrs.validators.optional(_port))
    #: OAuth: origins a redirect URI may point at (scheme://host[:port]); empty = localhost only
    oauth_allowed_origins: tuple[str, ...] = ()
    oauth_redirect_path: str = "/connectors/oauth/callback/{connector}"
    oauth_post_auth_path: str = "/connectors/{connector}"
    oauth_state_ttl_seconds: int = field(default=600, validator=_at_least(1))
    #: redirect URI the front end used for the legacy POST /getTokenFromCode (e.g. "postmessage")
    oauth_legacy_redirect_uri: str | None = None
    oauth_http_timeout_seconds: float = field(default=10.0, validator=_positive)
    refresh_interval_seconds: float = field(default=30.0, validator=_positive)
    refresh_margin_seconds: int = field(default=600, validator=_at_least(0))
    #: due tokens per pass; 0 is refused (a database "limit 0" means no limit)
    refresh_batch_size: int = field(default=100, validator=_at_least(1))
    refresh_concurrency: int = field(default=8, validator=_at_least(1))
    #: whether ``serve`` refreshes tokens in the background; ``worker`` always does
    run_refresher: bool = True
    custom_providers: tuple[Mapping[str, Any], ...] = ()
    #: pipeshub: events, routes and payloads exactly as the existing service's consumers read them
    compat: Literal["none", "pipeshub"] = "none"
    #: the existing front end's URL (compat: the legacy code exchange's default redirect URI)
    frontend_url: str | None = None
    #: who is an org admin: the user token's claims, or the existing deployment's user groups
    iam: Literal["claims", "mongo-user-groups"] = "claims"
    #: the existing deployment's MongoDB (default: ``mongo_url``)
    iam_mongo_url: str | None = field(default=None, repr=False, validator=_url(MONGO_SCHEMES, multi_host=True))
    iam_mongo_database: str = "es"
    iam_user_groups_collection: str = "userGroups"
    iam_org_field: str = "orgId"
    iam_users_field: str = "users"
    iam_type_field: str = "type"
    iam_deleted_field: str = "isDeleted"
    iam_admin_type: str = "admin"
    #: how long a user's admin verdict is kept (a removed admin keeps access at most this long)
    iam_cache_ttl_seconds: float = field(default=30.0, validator=_positive)
    iam_cache_size: int = field(default=10_000, validator=_at_least(1))
    config_file: Path | None = None

    def __attrs_post_init__(self) -> None:
        if self.etcd_endpoint is not None and self.etcd_endpoints:
            raise SettingsError.for_field(
                "etcd_endpoints", "set etcd_endpoints (the cluster's members) or etcd_endpoint, not both"
            )

    @property
    def database_path(self) -> Path:
        return self.data_dir / "connector-manager.db"

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    # -- each backend's section --------------------------------------------------------------

    @property
    def sqlite(self) -> SQLiteSettings:
        return SQLiteSettings(path=self.database_path)

    @property
    def mongo(self) -> MongoSettings:
        return MongoSettings(
            url=self.mongo_url,
            database=self.mongo_database,
            timeout_seconds=self.mongo_timeout_seconds,
            start_up_timeout_seconds=self.start_up_timeout_seconds,
        )

    @property
    def etcd_setting(self) -> str:
        """The setting that names the etcd members (for start-up errors)."""
        return "etcd_endpoints" if self.etcd_endpoints else "etcd_endpoint"

    @property
    def etcd(self) -> EtcdSettings:
        listed = self.etcd_endpoints or (self.etcd_endpoint or "127.0.0.1:2379",)
        endpoints = tuple(hp for hp in map(split_host_port, listed) if hp is not None)
        tls = None
        if self.etcd_tls or self.etcd_ca_file or self.etcd_cert_file or self.etcd_key_file:
            tls = EtcdTlsFiles(ca_file=self.etcd_ca_file, cert_file=self.etcd_cert_file, key_file=self.etcd_key_file)
        return EtcdSettings(
            endpoints=endpoints,
            user=self.etcd_user,
            password=self.etcd_password,
            timeout_seconds=self.etcd_timeout_seconds,
            namespace=self.etcd_namespace,
            member_timeout_seconds=self.etcd_member_timeout_seconds,
            tls=tls,
            start_up_timeout_seconds=self.start_up_timeout_seconds,
        )

    @property
    def redis(self) -> RedisSettings:
        sentinels = tuple(hp for hp in map(split_host_port, self.redis_sentinels) if hp is not None)
        acks = self.redis_replica_acks
        return RedisSettings(
            url=self.redis_url,
            sentinels=sentinels,
            sentinel_master=self.redis_sentinel_master,
            sentinel_password=self.redis_sentinel_password,
            replica_acks=(1 if sentinels else 0) if acks is None else acks,
            start_up_timeout_seconds=self.start_up_timeout_seconds,
        )

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(
            bootstrap=",".join(self.kafka_bootstrap),
            client_config=self.kafka_client_config,
            profile=self.compat,
            replication_factor=self.kafka_replication_factor,
            min_insync_replicas=self.kafka_min_insync_replicas,
            start_up_timeout_seconds=self.start_up_timeout_seconds,
        )

    @property
    def user_groups_iam(self) -> UserGroupsIamSettings:
        # imported here: it needs the MongoDB driver, an extra the embedded default goes without
        from adapters.iam.mongo_user_groups import UserGroupsSchema

        return UserGroupsIamSettings(
            url=self.iam_mongo_url or self.mongo_url,
            database=self.iam_mongo_database,
            timeout_seconds=self.mongo_timeout_seconds,
            schema=UserGroupsSchema(
                collection=self.iam_user_groups_collection,
                org_field=self.iam_org_field,
                users_field=self.iam_users_field,
                type_field=self.iam_type_field,
                deleted_field=self.iam_deleted_field,
                admin_type=self.iam_admin_type,
            ),
            cache_ttl_seconds=self.iam_cache_ttl_seconds,
            cache_size=self.iam_cache_size,
            start_up_timeout_seconds=self.start_up_timeout_seconds,
        )

    @property
    def backend(self) -> BackendSettings | None:
        if not self.backend_url:
            return None
        return BackendSettings(url=self.backend_url, timeout_seconds=self.backend_timeout_seconds)


_CONVERTER = make_settings_converter()
_ENV_PREFIX = "CM_"
#: come only from the settings file
_FILE_ONLY = {"custom_providers"}
#: settings that are also the prefix of a TOML table of related settings
_TABLES = {"iam"}


def _names() -> set[str]:
    return {f.name for f in attrs.fields(Settings)}


def structure_settings(values: Mapping[str, Any], base: Settings | None = None) -> Settings:
    """``base`` (default: the defaults) with ``values`` (setting name → raw value) applied, or
    :class:`SettingsError` naming the first setting at fault."""
    unknown = sorted(set(values) - _names())
    if unknown:
        raise SettingsError.for_field(unknown[0], "unknown setting")
    merged = {**(_CONVERTER.unstructure(base) if base is not None else {}), **values}
    try:
        return _CONVERTER.structure(merged, Settings)
    except ClassValidationError as exc:
        raise _first_error(exc) from None


def _first_error(exc: ClassValidationError) -> SettingsError:
    """The first failure as one error naming its setting: a value of the wrong kind (noted by
    cattrs with the attribute's name) or a range the class's validators refused."""
    with_notes, without_notes = exc.group_exceptions()
    for error in without_notes:
        if isinstance(error, SettingsError):
            return error
    for error, note in with_notes:
        return SettingsError.for_field(note.name, str(error) if isinstance(error, ValueError) else "invalid value")
    return SettingsError("the settings are invalid")


def load_settings(
    config_file: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults ← TOML file ← ``CM_*`` environment ← explicit overrides (CLI flags)."""
    env = os.environ if env is None else env
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
        values["config_file"] = str(file)
    for name in _names() - _FILE_ONLY:
        key = _ENV_PREFIX + name.upper()
        if key in env:
            values[name] = env[key]
    values.update({k: v for k, v in overrides.items() if v is not None})
    return structure_settings(values)


def _flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """``[oauth] allowed_origins = [...]`` → ``oauth_allowed_origins``; ``[[providers]]`` →
    ``custom_providers``; ``[server] host`` → ``host``."""
    flat: dict[str, Any] = {}
    names = _names()
    for key, value in data.items():
        if key in _TABLES and isinstance(value, Mapping):  # [iam] mongo_database = ... → iam_mongo_database
            flat.update({f"{key}_{sub}": v for sub, v in value.items()})
        elif key in names:  # a setting written whole (kafka_client_config = {...})
            flat[key] = value
        elif key == "providers":
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
    """``settings`` with ``values`` (setting name → raw value) structured and applied."""
    return structure_settings(values, base=settings)
