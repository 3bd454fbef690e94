"""A token's sealed material names the org and connector it was sealed for; it opens only for
them. Material sealed before it named them opens as before (until the record is next saved)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from adapters.codec import make_json_converter
from adapters.crypto import Aead, Keyring
from adapters.sealing import MisplacedMaterial, open_token_record, seal_token_record, token_path
from tests.builders import token_record

CONV = make_json_converter()


def sealed(org: str = "org-a") -> tuple[Aead, dict[str, object], str]:
    aead = Aead(Keyring.generate())
    record = token_record(org, datetime.now(UTC), token_id="t1")
    meta, material = seal_token_record(CONV, aead, record)
    return aead, meta, material


def test_material_opens_for_its_own_record() -> None:
    aead, meta, material = sealed()
    record = open_token_record(CONV, aead, "t1", meta, material, 3)
    assert (record.org_id, record.connector_key, record.version) == ("org-a", "googleWorkspace", 3)
    assert record.tokens.access_token == "access-secret-value"


@pytest.mark.parametrize(("field", "value"), [("org_id", "org-b"), ("connector_key", "onedrive")])
def test_material_does_not_open_for_another_org_or_connector(field: str, value: str) -> None:
    aead, meta, material = sealed()
    with pytest.raises(MisplacedMaterial) as refused:
        open_token_record(CONV, aead, "t1", {**meta, field: value}, material, 1)
    assert field in str(refused.value) and "secret-value" not in str(refused.value)


def test_material_sealed_before_it_named_its_org_still_opens() -> None:
    aead, meta, _ = sealed()
    older = {"access_token": "old-access", "refresh_token": "old-refresh", "id_token": None}
    material = aead.seal(json.dumps(older).encode(), path=token_path("t1"))
    record = open_token_record(CONV, aead, "t1", {**meta, "org_id": "org-b"}, material, 1)
    assert (record.org_id, record.tokens.access_token) == ("org-b", "old-access")
