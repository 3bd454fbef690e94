"""Sealing a token's material again for key rotation binds it to the org and connector its record
names (material sealed before it named them), unless the record does not agree with itself on
them; what cannot be bound or re-encrypted is told, never changed."""

from __future__ import annotations

import json

import pytest

from adapters.crypto import Aead, Keyring
from adapters.sealing import token_path
from adapters.token_binding import StoredToken, binding_of, bindings, reseal_token
from connector_core.errors import CryptoError

SECRET: dict[str, object] = {"access_token": "AT-SECRET", "refresh_token": "RT-SECRET", "id_token": None}
META = {"id": "t1", "org_id": "org-a", "connector_key": "jira", "tokens": {}}


def seal(aead: Aead, material: dict[str, object], token_id: str = "t1") -> str:
    return aead.seal(json.dumps(material).encode(), path=token_path(token_id))


def stored(material: object, *, columns: tuple[object, object] = ("org-a", "jira"), meta: object = None) -> StoredToken:
    return StoredToken("t1", columns, json.dumps(META) if meta is None else meta, material)


def opened(aead: Aead, envelope: str | None) -> dict[str, object]:
    assert envelope is not None
    return dict(json.loads(aead.open(envelope, path=token_path("t1"))))


@pytest.fixture
def aead() -> Aead:
    return Aead(Keyring.generate("k1"))


def test_material_that_names_neither_is_bound_to_what_its_record_names(aead: Aead) -> None:
    token = stored(seal(aead, SECRET), meta=META)  # metadata as a document (MongoDB) or its text (SQLite)
    assert binding_of(aead, token) == "recordIdOnly"
    told: list[str] = []
    resealed = reseal_token(aead, token, told.append)  # under the primary key already: bound all the same
    assert told == [] and opened(aead, resealed) == SECRET | {"org_id": "org-a", "connector_key": "jira"}
    assert binding_of(aead, stored(resealed)) == "orgAndConnector"
    assert reseal_token(aead, stored(resealed), told.append) is None  # nothing left to do


@pytest.mark.parametrize(
    ("material", "columns", "meta"),
    [
        (SECRET, ("org-b", "jira"), None),  # its columns moved alone
        (SECRET, ("org-a", "confluence"), None),
        (SECRET, ("org-a", "jira"), "not json"),  # its metadata names nothing
        (SECRET, ("org-a", "jira"), json.dumps({**META, "org_id": None})),
        (SECRET | {"org_id": "org-a", "connector_key": "jira"}, ("org-b", "jira"), {**META, "org_id": "org-b"}),
    ],
    ids=["org column", "connector column", "metadata not json", "metadata without org", "bound, moved"],
)
def test_a_record_that_does_not_agree_with_itself_is_told_and_left(
    aead: Aead, material: dict[str, object], columns: tuple[str, str], meta: object
) -> None:
    token = stored(seal(aead, material), columns=columns, meta=meta)
    stale = Aead(aead.keyring.rotated("k2"))  # needs re-encrypting too: still refused
    for sealer in (aead, stale):
        told: list[str] = []
        if "org_id" in material and sealer is aead:
            assert reseal_token(sealer, token, told.append) is None and told == []  # nothing to do for it
            continue
        assert reseal_token(sealer, token, told.append) is None
        assert told == ["/tokens/t1"]
        with pytest.raises(CryptoError, match="cannot re-encrypt the value at '/tokens/t1'") as refused:
            reseal_token(sealer, token, None)
        assert "SECRET" not in str(refused.value) and "org-b" not in str(refused.value)


def test_material_that_does_not_open_is_told_when_it_needs_re_encrypting(aead: Aead) -> None:
    lost = seal(Aead(Keyring.generate("k1")), SECRET)  # under a k1 this keyring does not hold
    told: list[str] = []
    assert reseal_token(aead, stored(lost), told.append) is None and told == []  # "under the primary": left alone
    assert reseal_token(Aead(aead.keyring.rotated("k2")), stored(lost), told.append) is None
    assert reseal_token(aead, stored(12345), told.append) is None  # no string at all
    assert reseal_token(aead, stored("not-an-envelope"), told.append) is None
    garbage = aead.seal(b"[1, 2]", path=token_path("t1"))  # opens, but holds no token material
    assert reseal_token(Aead(aead.keyring.rotated("k2")), stored(garbage), told.append) is None
    assert told == ["/tokens/t1"] * 4
    assert bindings(aead, [stored(lost), stored(12345), stored(garbage), stored(seal(aead, SECRET))]) == {
        "unreadable": 3,
        "recordIdOnly": 1,
    }
