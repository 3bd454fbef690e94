"""``connector-manager connectors list|show|configure|enable|disable``: one org's connectors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from connector_core.catalog import thaw
from connector_core.errors import ValidationError
from connector_core.services.connectors import ConfigUpdate
from entrypoints.bootstrap import Container
from entrypoints.cli.options import add_settings_options, nonblank
from entrypoints.cli.output import Output, add_output_options
from entrypoints.cli.runtime import with_container
from entrypoints.http import schemas
from entrypoints.http.validation import MAX_BODY_BYTES, check, make_validator, parse_json
from entrypoints.http.views import config_json, connector_json
from entrypoints.settings import Settings

#: who the CLI's changes are recorded as, unless --by says otherwise
DEFAULT_ACTOR = "connector-manager-cli"


def register(commands: argparse._SubParsersAction[Any]) -> None:
    group = commands.add_parser(
        "connectors",
        help="list, show, configure, enable and disable an org's connectors",
        description="Manage one org's connectors directly in the deployment's store (works whether or not"
        " `serve` runs). Secrets are write-only: they are never printed.",
    )
    sub = group.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            name, help=help_text, description=help_text[:1].upper() + help_text[1:] + "."
        )
        add_settings_options(p)
        p.add_argument("--org", required=True, type=nonblank, help="the org whose connectors these are")
        return p

    p = action("list", "every connector of the org: enabled, configured, authorization state")
    add_output_options(p)
    p.set_defaults(run=_list)

    p = action("show", "one connector's configuration (secrets shown as set or not) and state")
    p.add_argument("name", help="connector key or alias (e.g. confluence)")
    add_output_options(p)
    p.set_defaults(run=_show)

    p = action("configure", "replace a connector's configuration with a JSON document (as PUT /config)")
    p.add_argument("name", help="connector key or alias (e.g. confluence)")
    p.add_argument(
        "--file",
        required=True,
        metavar="PATH",
        help='the configuration as JSON, "-" for standard input; e.g. {"baseUrl": "https://acme.atlassian.net",'
        ' "auth": {"authType": "API_TOKEN", "email": "ops@acme.example", "apiToken": "..."}};'
        " a stored secret left out is kept, one given as null is removed",
    )
    p.add_argument(
        "--by",
        default=DEFAULT_ACTOR,
        type=nonblank,
        help=f"who made the change, for the record (default {DEFAULT_ACTOR})",
    )
    add_output_options(p)
    p.set_defaults(run=_configure)

    for name, enabled in (("enable", True), ("disable", False)):
        p = action(name, f"{name} a connector (announced with an {'appEnabled' if enabled else 'appDisabled'} event)")
        p.add_argument("name", help="connector key or alias (e.g. confluence)")
        p.add_argument(
            "--by",
            default=DEFAULT_ACTOR,
            type=nonblank,
            help=f"who made the change, for the record (default {DEFAULT_ACTOR})",
        )
        add_output_options(p)
        p.set_defaults(run=_toggle, enabled=enabled)


def _status(c: dict[str, Any]) -> str:
    return str(c["authStatus"]["state"])


def _list(args: argparse.Namespace, settings: Settings) -> int:
    async def work(container: Container) -> list[dict[str, Any]]:
        return [connector_json(v) for v in await container.connectors.list(args.org)]

    found = with_container(settings, work)
    rows = [[c["key"], c["name"], c["isEnabled"], c["isConfigured"], c["authType"], _status(c)] for c in found]
    columns = ["key", "name", "enabled", "configured", "auth type", "auth status"]
    Output.of(args).table(columns, rows, data=found, title=f"Connectors of {args.org}")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    async def work(container: Container) -> dict[str, Any]:
        view = await container.connectors.get(args.org, args.name)
        return {**config_json(view), "connector": connector_json(view)}

    found = with_container(settings, work)
    config = found["config"]
    fields: dict[str, Any] = {
        "connector": f"{found['name']} ({found['key']})",
        "enabled": found["isEnabled"],
        "auth type": found["authType"],
        "auth status": found["authStatus"],
        "base URL": config["baseUrl"],
        **{f"auth.{k}": v for k, v in config["auth"].items()},
        **{f"sync.{k}": v for k, v in config["sync"].items()},
        "missing": found["missing"],
        "version": found["version"],
    }
    Output.of(args).record(fields, data=found)
    return 0


def _read_body(path: str) -> dict[str, Any]:
    raw = sys.stdin.buffer.read(MAX_BODY_BYTES + 1) if path == "-" else _read_file(Path(path))
    if len(raw) > MAX_BODY_BYTES:
        raise ValidationError.for_field("--file", "is larger than 1 MiB")
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ValidationError.for_field("--file", "must hold a JSON object")
    check(_validator(schemas.CONFIG_BODY), body, "configuration")
    return body


def _validator(schema: Mapping[str, Any]) -> Draft202012Validator:
    validator = make_validator(schema)
    assert validator is not None
    return validator


def _read_file(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(MAX_BODY_BYTES + 1)
    except OSError as exc:
        raise ValidationError.for_field("--file", f"cannot read {path}: {exc.strerror}") from None


def _configure(args: argparse.Namespace, settings: Settings) -> int:
    body = _read_body(args.file)  # checked before anything is opened

    async def work(container: Container) -> dict[str, Any]:
        entry = container.catalog.get(args.name)
        check(_validator(thaw(entry.config_schema)), body, "configuration")
        update = ConfigUpdate(
            base_url=body["baseUrl"],
            auth=body.get("auth") or {},
            sync=body.get("sync") or {},
            filters=body.get("filters") or {},
        )
        view = await container.connectors.update_configuration(args.org, args.by, entry.key, update)
        return config_json(view)

    saved = with_container(settings, work)
    missing = f"; still missing: {', '.join(saved['missing'])}" if saved["missing"] else ""
    Output.of(args).result(saved, f"{saved['name']}: configuration saved (version {saved['version']}){missing}")
    return 0


def _toggle(args: argparse.Namespace, settings: Settings) -> int:
    async def work(container: Container) -> dict[str, Any]:
        view = await container.connectors.set_enabled(args.org, args.by, args.name, args.enabled)
        return connector_json(view)

    done = with_container(settings, work)
    Output.of(args).result(done, f"{done['name']}: {'enabled' if done['isEnabled'] else 'disabled'}")
    return 0
