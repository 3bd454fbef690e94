"""The settings section of each backend. A credential is never part of a repr."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from attrs import field, frozen

from adapters.event_wire import Profile
from adapters.health import START_UP_TIMEOUT_SECONDS

if TYPE_CHECKING:  # the MongoDB driver is an extra: serving on the embedded default needs none
    from adapters.iam.mongo_user_groups import UserGroupsSchema


def _frozen_mapping(value: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(value.items()))


@frozen
class SQLiteSettings:
    #: the database file; its directory is created (mode 0700) when missing
    path: Path


@frozen
class MongoSettings:
    url: str = field(repr=False)  # may carry user:password
    database: str
    timeout_seconds: float
    #: how long start-up waits for the server to answer (retrying)
    start_up_timeout_seconds: float = START_UP_TIMEOUT_SECONDS


@frozen
class EtcdTlsFiles:
    """PEM files for TLS to etcd: the CA that signed the members' certificates (None: the
    system's CAs), and a client certificate with its key when the cluster asks for one."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


#: where the lease locks live in the namespace (plain values, no secrets: with ``secrets =
#: "etcd"`` they share the secret store's keyspace, and key rotation leaves them out)
LOCKS_PREFIX = "/services/locks/"  # here, not with the etcd factory: the CLI reads it without the driver


@frozen
class EtcdSettings:
    #: the members' ``(host, port)``; calls go to one and fail over to the next
    endpoints: tuple[tuple[str, int], ...]
    user: str | None
    password: str | None = field(repr=False)
    timeout_seconds: float
    #: a prefix in front of every key this deployment writes
    namespace: str
    #: how long one member may take before a call moves on to the next
    member_timeout_seconds: float = 0.5
    #: None: plaintext
    tls: EtcdTlsFiles | None = None
    #: how long start-up waits for the server to answer (retrying)
    start_up_timeout_seconds: float = START_UP_TIMEOUT_SECONDS


@frozen
class RedisSettings:
    url: str = field(repr=False)  # may carry a password
    #: Sentinels ``(host, port)`` that name the primary; empty: ``url`` is the server
    sentinels: tuple[tuple[str, int], ...] = ()
    #: the name the Sentinels monitor the primary under
    sentinel_master: str = "mymaster"
    sentinel_password: str | None = field(default=None, repr=False)
    #: replicas that must confirm a lease or a cache invalidation before it counts (WAIT)
    replica_acks: int = 0
    #: how long start-up waits for the server to answer (retrying)
    start_up_timeout_seconds: float = START_UP_TIMEOUT_SECONDS


@frozen
class KafkaSettings:
    bootstrap: str
    #: extra librdkafka settings; ``sasl.password`` and the like live here
    client_config: tuple[tuple[str, str], ...] = field(converter=_frozen_mapping, repr=False)
    #: the events' wire shapes: ours (``none``) or the existing service's consumers' (``pipeshub``)
    profile: Profile = "none"
    #: of the topics created here; -1: the broker's default
    replication_factor: int = -1
    #: ``min.insync.replicas`` of the topics created here; None: the broker's default
    min_insync_replicas: int | None = None
    #: how long start-up waits for a broker to answer (retrying)
    start_up_timeout_seconds: float = START_UP_TIMEOUT_SECONDS


@frozen
class BackendSettings:
    url: str = field(repr=False)  # may carry user:password
    timeout_seconds: float


@frozen
class UserGroupsIamSettings:
    """The existing deployment's MongoDB, where its user groups say who is an admin."""

    url: str = field(repr=False)  # may carry user:password
    database: str
    timeout_seconds: float
    schema: UserGroupsSchema
    cache_ttl_seconds: float
    cache_size: int
    #: how long start-up waits for the server to answer (retrying)
    start_up_timeout_seconds: float = START_UP_TIMEOUT_SECONDS


@frozen
class PipesHubSourceSettings:
    """Where the existing deployment keeps its data, and the key its values are encrypted with."""

    etcd: EtcdSettings
    #: the existing service's SECRET_KEY
    secret_key: str = field(repr=False)
    mongo_url: str = field(repr=False)  # may carry user:password
    mongo_database: str
    mongo_timeout_seconds: float
    #: how long start-up waits for its MongoDB to answer (retrying; its etcd's is in ``etcd``)
    start_up_timeout_seconds: float = START_UP_TIMEOUT_SECONDS
