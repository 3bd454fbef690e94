"""A connector's configuration form, generated from its JSON Schema (titles and help text come
from the catalog), and the form's answers turned back into the body ``PUT /config`` takes.

Secret (``writeOnly``) fields are never filled in: the page only learns whether one is set
(from the same masked view the API returns), and an empty secret field keeps the stored value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import evolve, frozen

from connector_core.catalog import CatalogEntry, FilterDefinition, thaw
from connector_core.errors import ValidationError
from entrypoints.http.validation import parse_json

#: a secret longer than this is pasted into a text area (a service-account key), not an input
_LONG_SECRET = 4096


@frozen
class FormField:
    name: str  # the dotted path, also the form field's name: auth.clientId
    title: str
    help: str
    kind: str  # text, email, url, number, select, checkbox, secret, secret-area, json
    value: str = ""
    checked: bool = False
    is_set: bool = False  # a secret that is stored
    required: bool = False
    options: tuple[str, ...] = ()
    #: the authentication types that use the field (empty: all); the page hides the others
    auth_types: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None


@frozen
class FormSection:
    title: str
    fields: tuple[FormField, ...]


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """A property with ``$ref`` gets the definition, its own title and help text kept."""
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return {**dict(defs.get(ref.removeprefix("#/$defs/"), {})), **{k: v for k, v in node.items() if k != "$ref"}}
    return dict(node)


def _kind(schema: Mapping[str, Any]) -> str:
    if "enum" in schema:
        return "select"
    kind = schema.get("type")
    if schema.get("writeOnly"):
        return "secret-area" if int(schema.get("maxLength", 0)) > _LONG_SECRET else "secret"
    if kind == "boolean":
        return "checkbox"
    if kind in ("integer", "number"):
        return "number"
    if kind == "object":
        return "json"
    return {"email": "email", "uri": "url"}.get(str(schema.get("format")), "text")


def _label(name: str) -> str:
    spaced = "".join(f" {c.lower()}" if c.isupper() else c for c in name).strip()
    return spaced[:1].upper() + spaced[1:]


def _field(entry: CatalogEntry, path: str, schema: Mapping[str, Any], current: Any, required: bool) -> FormField:
    kind = _kind(schema)
    section, _, name = path.rpartition(".")
    uses = tuple(t for t, paths in entry.requirements.items() if path in paths)
    common: dict[str, Any] = {
        "name": path,
        "title": str(schema.get("title") or _label(name or path)),
        "help": str(schema.get("description") or ""),
        "kind": kind,
        "required": required,
        "auth_types": uses,
    }
    if kind in ("secret", "secret-area"):
        masked = current.get("has" + name[:1].upper() + name[1:]) if isinstance(current, Mapping) else False
        return FormField(**common, is_set=bool(masked))
    value = current.get(name) if isinstance(current, Mapping) and section else current
    if kind == "checkbox":
        return FormField(**common, checked=value is True)
    if kind == "json":
        text = json.dumps(value, indent=2, sort_keys=True) if value else ""
        return FormField(**common, value=text)
    return FormField(
        **common,
        value="" if value is None else str(value),
        options=tuple(str(o) for o in schema.get("enum", ())),
        minimum=schema.get("minimum"),
        maximum=schema.get("maximum"),
        max_length=schema.get("maxLength"),
    )


def config_form(entry: CatalogEntry, config: Mapping[str, Any]) -> list[FormSection]:
    """The form's sections: top-level fields first ("Connection"), then one per object with
    properties (credentials, sync), then free-form objects ("Advanced"). ``config`` is the
    masked configuration (:func:`entrypoints.http.views.config_json`'s ``config``)."""
    schema = thaw(entry.config_schema)
    defs = schema.get("$defs", {})
    required = set(schema.get("required", ()))
    general: list[FormField] = []
    sections: list[FormSection] = []
    advanced: list[FormField] = []
    for name, raw in schema.get("properties", {}).items():
        prop = _resolve(raw, defs)
        if prop.get("type") == "object" and prop.get("properties"):
            inner_required = set(prop.get("required", ()))
            fields = tuple(
                _field(
                    entry, f"{name}.{sub}", _resolve(sub_schema, defs), config.get(name) or {}, sub in inner_required
                )
                for sub, sub_schema in prop["properties"].items()
            )
            sections.append(FormSection(str(prop.get("title") or _label(name)), fields))
        elif prop.get("type") == "object":
            advanced.append(_field(entry, name, prop, config.get(name), name in required))
        else:
            general.append(_field(entry, name, prop, config.get(name), name in required))
    out = [FormSection("Connection", tuple(general))] if general else []
    out += sections
    if advanced:
        out.append(FormSection("Advanced", tuple(advanced)))
    return out


def config_body(
    sections: Sequence[FormSection], answers: Mapping[str, str]
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The ``PUT /config`` body from the form's answers, and what could not even be read (a
    number that is not one, JSON that does not parse). Empty fields are left out: an empty
    secret keeps the stored one; the schema check that follows says what is missing."""
    body: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for f in (f for s in sections for f in s.fields):
        raw = answers.get(f.name, "")
        value: Any
        if f.kind == "checkbox":
            value = raw == "on"
        elif not raw.strip():
            continue
        elif f.kind == "number":
            try:
                value = int(raw.strip())
            except ValueError:
                errors.append({"path": f.name, "message": "must be a whole number"})
                continue
            if not -(2**63) <= value < 2**63:
                errors.append({"path": f.name, "message": "must be a whole number within 64 bits"})
                continue
        elif f.kind == "json":
            try:  # as strictly as an API body: what a store cannot keep is refused here
                value = parse_json(raw.encode("utf-8", "surrogatepass"))
            except ValidationError as exc:
                inner = exc.errors[0] if exc.errors else {"path": "body", "message": "must be a JSON object"}
                where = "" if inner["path"] == "body" else f".{inner['path']}"
                errors.append({"path": f"{f.name}{where}", "message": inner["message"]})
                continue
        elif f.kind in ("secret", "secret-area"):
            value = raw
        else:
            value = raw.strip()
        section, _, name = f.name.rpartition(".")
        if section:
            body.setdefault(section, {})[name] = value
        else:
            body[name] = value
    return body, errors


# -- the filter selection ----------------------------------------------------------------------


@frozen
class FilterField:
    key: str
    label: str
    type: str  # list, multiselect, date, boolean, string
    value: str = ""
    options: tuple[str, ...] = ()
    selected: tuple[str, ...] = ()


def filter_form(filters: Sequence[FilterDefinition], selection: Mapping[str, Any]) -> list[FilterField]:
    out = []
    for f in filters:
        current = selection.get(f.key)
        if f.type == "multiselect":
            chosen = tuple(str(v) for v in current) if isinstance(current, list) else ()
            out.append(FilterField(f.key, f.label, f.type, options=f.options, selected=chosen))
        elif f.type == "list":
            text = "\n".join(str(v) for v in current) if isinstance(current, list) else ""
            out.append(FilterField(f.key, f.label, f.type, value=text))
        elif f.type == "boolean":
            out.append(FilterField(f.key, f.label, f.type, value="" if current is None else str(current).lower()))
        else:
            out.append(FilterField(f.key, f.label, f.type, value="" if current is None else str(current)))
    return out


def filter_selection(filters: Sequence[FilterDefinition], values: Mapping[str, list[str]]) -> dict[str, Any]:
    """``filterOptions`` from the form (an empty field clears that filter: null)."""
    selection: dict[str, Any] = {}
    for f in filters:
        given = [v for v in values.get(f"filter.{f.key}", []) if v != ""]
        if f.type == "multiselect":
            selection[f.key] = given or None
        elif f.type == "list":
            lines = [line.strip() for v in given for line in v.splitlines() if line.strip()]
            selection[f.key] = lines or None
        elif f.type == "boolean":
            selection[f.key] = {"true": True, "false": False}.get(given[0]) if given else None
        else:
            selection[f.key] = given[0] if given else None
    return selection


def with_answers(sections: Sequence[FormSection], answers: Mapping[str, str]) -> list[FormSection]:
    """The form as the person filled it in (to show it again with its errors); secrets stay
    empty: what was typed into one is never sent back."""

    def answered(f: FormField) -> FormField:
        if f.kind in ("secret", "secret-area"):
            return f
        if f.kind == "checkbox":
            return evolve(f, checked=answers.get(f.name) == "on")
        return evolve(f, value=answers.get(f.name, ""))

    return [evolve(s, fields=tuple(answered(f) for f in s.fields)) for s in sections]
