"""Wiring for ``connector-manager import``: the existing deployment as the source, this
deployment's stores as the target. What maps to what is the source adapter's
(:mod:`adapters.pipeshub`); how it is applied, the import use case's
(:mod:`connector_core.services.importing`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from attrs import evolve, frozen

from adapters.crypto import Aead
from adapters.factories.sections import PipesHubSourceSettings
from adapters.system import SystemClock
from connector_core.catalog import CatalogEntry, thaw
from connector_core.errors import ValidationError
from connector_core.services.importing import ConnectorImport, ImportReport, ImportResult, Progress
from entrypoints.bootstrap import service_context
from entrypoints.http.validation import MAX_JSON_DEPTH, check_section_sizes, make_validator, parse_json, schema_errors
from entrypoints.infrastructure import open_infrastructure
from entrypoints.service_secrets import adopt_service_secrets, load_keyring
from entrypoints.settings import Settings, SettingsError, split_host_port


@frozen
class ImportRun:
    report: ImportReport
    #: the existing deployment's front-end URL, when it names one and ``frontend_url`` is unset
    frontend_url_hint: str | None


async def run_import(
    settings: Settings,
    env: Mapping[str, str],
    source: PipesHubSourceSettings,
    *,
    dry_run: bool,
    progress: Progress | None = None,
) -> ImportRun:
    """Read the whole existing deployment, then apply it here (or, ``dry_run``, say what would
    be done). The source is only read. Fails with one line naming the setting when a server of
    either side does not answer."""
    from adapters.factories.pipeshub import open_pipeshub_source

    _refuse_writing_into(settings, source)
    opened = await open_pipeshub_source(source)
    try:
        snapshot = await opened.source.read()
    finally:
        await opened.aclose()
    clock = SystemClock()
    infra = await open_infrastructure(settings, Aead(load_keyring(settings, env)), clock)
    try:
        settings, ctx = await service_context(settings, clock, None, infra)
        keys = await adopt_service_secrets(ctx.secrets, snapshot.service_secrets, dry_run=dry_run)
        if progress is not None:
            progress(1, 1 + len(snapshot.candidates) + len(snapshot.skipped) + len(snapshot.failed), keys)
        importer = ConnectorImport(ctx, check_auth=check_imported_auth)
        connectors = await importer.run(snapshot, dry_run=dry_run, progress=_after_one(progress))
    finally:
        await infra.aclose()
    hint = snapshot.frontend_url if snapshot.frontend_url and not settings.frontend_url else None
    return ImportRun(ImportReport((keys, *connectors.results)), hint)


def check_imported_auth(entry: CatalogEntry, auth: Mapping[str, Any]) -> None:
    """What ``PUT /config`` checks of an ``auth`` section, for an imported one: strict JSON as a
    body is parsed (no lone surrogate, no number beyond 64 bits or not finite, at most 32 levels
    deep), the connector's configuration schema, the section's size limit. One
    :class:`ValidationError` (or ``PayloadTooLarge``) naming every field at fault, never a value."""
    body = {"auth": dict(auth)}
    try:
        parse_json(json.dumps(body).encode())
    except RecursionError:
        raise ValidationError.for_field("auth", f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValidationError as exc:
        errors = [{**e, "path": "auth" if e["path"] == "body" else e["path"]} for e in exc.errors]
        _refuse(errors or [{"path": "auth", "message": "is not valid JSON"}])
    validator = make_validator(thaw(entry.config_schema))
    assert validator is not None
    # the import has no baseUrl to give: only what the schema says of the auth section counts
    _refuse([e for e in schema_errors(validator, body, "") if e["path"].startswith("auth")])
    check_section_sizes(body)


def _refuse(errors: list[dict[str, str]]) -> None:
    if errors:
        listed = "; ".join(f"{e['path']} {e['message']}" for e in errors)
        raise ValidationError(f"invalid configuration: {listed}", errors=errors)


def _refuse_writing_into(settings: Settings, source: PipesHubSourceSettings) -> None:
    """The import writes connector secrets at the paths the existing service uses, and
    connectors into a ``connectorsConfig`` collection: never into the source's own."""
    ours, theirs = settings.etcd, source.etcd
    shared = set(ours.endpoints) & set(theirs.endpoints)
    if settings.secrets == "etcd" and shared and ours.namespace == theirs.namespace:
        raise SettingsError.for_field(
            "etcd_namespace",
            "this deployment's secrets would be written over the existing deployment's keys;"
            " give it a namespace of its own (e.g. /connector-manager)",
        )
    if settings.storage == "mongo" and (settings.mongo_url, settings.mongo_database) == (
        source.mongo_url,
        source.mongo_database,
    ):
        raise SettingsError.for_field(
            "mongo_database", "this deployment's storage is the existing deployment's database; give it its own"
        )


def _after_one(progress: Progress | None) -> Progress | None:
    """The connectors' progress, counted after the signing secrets' item."""
    if progress is None:
        return None
    report = progress

    def shifted(done: int, total: int, result: ImportResult) -> None:
        report(done + 1, total + 1, result)

    return shifted


def source_settings(
    settings: Settings,
    env: Mapping[str, str],
    *,
    etcd_endpoint: str | None,
    etcd_namespace: str,
    mongo_url: str | None,
    mongo_database: str | None,
) -> PipesHubSourceSettings:
    """Where the existing deployment is: the options given, else this deployment's own etcd and
    the IAM MongoDB settings; its ``SECRET_KEY`` from ``CM_LEGACY_SECRET_KEY`` (never an option:
    a command line is visible to every user of the machine)."""
    secret_key = env.get("CM_LEGACY_SECRET_KEY")
    if not secret_key:
        raise SettingsError.for_field("CM_LEGACY_SECRET_KEY", "set it to the existing service's SECRET_KEY")
    etcd = evolve(settings.etcd, namespace=etcd_namespace)
    if etcd_endpoint:
        # host:port alone (no user:password@, a port below 65536): the value is shown in messages
        endpoint = split_host_port(etcd_endpoint)
        if endpoint is None:
            raise SettingsError.for_field(
                "--from-etcd", "must be host:port (credentials go in CM_IMPORT_ETCD_USER and CM_IMPORT_ETCD_PASSWORD)"
            )
        user, password = env.get("CM_IMPORT_ETCD_USER") or None, env.get("CM_IMPORT_ETCD_PASSWORD") or None
        etcd = evolve(etcd, endpoints=(endpoint,), user=user, password=password, tls=None)
    return PipesHubSourceSettings(
        etcd=etcd,
        secret_key=secret_key,
        mongo_url=mongo_url or settings.iam_mongo_url or settings.mongo_url,
        mongo_database=mongo_database or settings.iam_mongo_database,
        mongo_timeout_seconds=settings.mongo_timeout_seconds,
        start_up_timeout_seconds=settings.start_up_timeout_seconds,
    )
