"""Contract: key rotation of a storage backend's sealed values (token material, OAuth states).

After a new primary key is added, ``reseal`` moves every sealed value under it without changing
a record's version; afterwards the old key can go and everything still reads. Repeating it is
harmless (resumable after a crash). A backend that keeps nothing at rest (memory) has nothing to
move, and says so. Token material comes out naming its org and connector, also material sealed
before it did (bound to its record id only), unless its record does not agree with itself on them:
that one is told as damaged and left as it is."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from attrs import define

from adapters.crypto import Aead, Keyring
from adapters.sealing import TOKEN_BINDING, token_path
from adapters.system import ManualClock
from connector_core.errors import CryptoError, UnreadableRecord
from connector_core.ports.oauth_state import PendingAuthorization
from connector_core.tokens import TokenRecord
from tests.builders import token_record
from tests.contract.backends import Damageable, Env
from tests.contract.conftest import Harness


@define
class Rotating:
    """A keyring source the test turns, as ``keys rotate`` turns master.key."""

    ring: Keyring

    def current(self) -> Keyring:
        return self.ring


KEYS = Rotating(Keyring.generate("k1"))


@pytest.fixture
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Env:
    KEYS.ring = Keyring.generate("k1")
    return Env(request, tmp_path, ManualClock(), Aead(KEYS))


async def seed(harness: Harness, n: int) -> tuple[list[str], list[str]]:
    org = f"org-{uuid.uuid4().hex[:8]}"
    tokens = []
    for i in range(n):
        record = token_record(org, harness.clock.now(), key=f"c{i}", token_id=f"t-{org}-{i}", refresh=f"RT-{i}")
        async with harness.uow() as uow:
            await uow.tokens.add(record)
            await uow.commit()
        tokens.append(record.id)
    states = []
    for i in range(n):
        pending = PendingAuthorization(
            state_hash=f"s-{org}-{i}",
            org_id=org,
            user_id="u1",
            connector_key="googleWorkspace",
            redirect_uri="https://app.example.com/cb",
            expires_at=harness.clock.now() + timedelta(minutes=10),
            code_verifier=f"VERIFIER-{i}",
        )
        await harness.states.put(pending)
        states.append(pending.state_hash)
    return tokens, states


async def test_reseal_moves_every_sealed_value_under_the_new_primary(harness: Harness) -> None:
    tokens, states = await seed(harness, 3)
    before = await harness.sealed.census()
    keeps_at_rest = bool(before)
    if keeps_at_rest:
        assert before == {"tokens": {"k1": 3}, "oauthStates": {"k1": 3}}
    assert await harness.sealed.token_bindings() == ({"orgAndConnector": 3} if keeps_at_rest else {})
    versions = {}
    async with harness.uow() as uow:
        for token_id in tokens:
            found = await uow.tokens.get(token_id)
            assert found is not None
            versions[token_id] = found.version

    KEYS.ring = KEYS.ring.rotated("k2")
    touched: list[int] = []
    moved = await harness.sealed.reseal(touched.append)
    assert moved == (6 if keeps_at_rest else 0)
    assert sum(touched) == moved
    after = await harness.sealed.census()
    assert after == ({"tokens": {"k2": 3}, "oauthStates": {"k2": 3}} if keeps_at_rest else {})
    assert await harness.sealed.reseal() == 0  # done: a second run (a resumed one) changes nothing

    # the old key can go: everything reads with the new one alone, versions untouched
    KEYS.ring = Keyring({"k2": _key(KEYS.ring, "k2")})
    async with harness.uow() as uow:
        for i, token_id in enumerate(tokens):
            found = await uow.tokens.get(token_id)
            assert found is not None and found.tokens.refresh_token == f"RT-{i}"
            assert found.version == versions[token_id]
    for i, state in enumerate(states):
        taken = await harness.states.take(state)
        assert taken is not None and taken.code_verifier == f"VERIFIER-{i}"


async def test_a_value_written_meanwhile_under_the_new_key_is_left_alone(harness: Harness) -> None:
    tokens, _ = await seed(harness, 2)
    KEYS.ring = KEYS.ring.rotated("k2")
    # a writer that already follows the new key saves one record before the rotation reaches it
    async with harness.uow() as uow:
        record = await uow.tokens.get(tokens[0])
        assert record is not None
        record.expiry_notified = True
        await uow.tokens.save(record)
        await uow.commit()
    census = await harness.sealed.census()
    if census:
        assert census["tokens"] == {"k1": 1, "k2": 1}
        assert await harness.sealed.reseal() == 3  # the other token and both states
    async with harness.uow() as uow:
        saved = await uow.tokens.get(tokens[0])
    assert saved is not None and saved.expiry_notified is True and saved.version == record.version


def _key(ring: Keyring, key_id: str) -> bytes:
    """The raw key ``key_id`` of ``ring`` (tests only: rebuild a ring without the old key)."""
    import base64

    spec = dict(entry.split(":", 1) for entry in ring.to_spec().split(","))
    return base64.b64decode(spec[key_id])


async def test_a_value_that_cannot_be_decrypted_is_told_and_left_while_the_rest_moves(harness: Harness) -> None:
    lost_tokens, lost_states = await seed(harness, 1)  # sealed under a k1 the deployment no longer holds
    KEYS.ring = Keyring.generate("k1")
    await seed(harness, 2)
    if not await harness.sealed.census():  # nothing kept at rest: nothing to tell
        assert await harness.sealed.reseal(damaged=lambda path: None) == 0
        return
    KEYS.ring = KEYS.ring.rotated("k2")
    told: list[str] = []
    moved = await harness.sealed.reseal(damaged=told.append)
    assert sorted(told) == sorted([f"/tokens/{lost_tokens[0]}", f"/oauth-state/{lost_states[0]}"])
    assert moved == 4  # the other tokens and states
    census = await harness.sealed.census()
    assert census == {"tokens": {"k1": 1, "k2": 2}, "oauthStates": {"k1": 1, "k2": 2}}
    with pytest.raises(CryptoError, match="cannot re-encrypt the value at"):  # without a listener: an error
        await harness.sealed.reseal()


async def _store_token(harness: Harness, org_id: str, key: str = "googleWorkspace") -> TokenRecord:
    record = token_record(org_id, harness.clock.now(), key=key, token_id=f"t-{org_id}-{key}", refresh="RT-KEPT")
    async with harness.uow() as uow:
        await uow.tokens.add(record)
        await uow.commit()
    return record


async def _unbind(damageable: Damageable, token_id: str) -> None:
    """The record's material sealed again as before 2026-12-04: naming no org or connector, bound to
    its record id alone (under the current primary key)."""
    aead, path = Aead(KEYS), token_path(token_id)
    secret = json.loads(aead.open(str(await damageable.material(token_id)), path=path))
    older = aead.seal(json.dumps({k: v for k, v in secret.items() if k not in TOKEN_BINDING}).encode(), path=path)
    await damageable.set_material(token_id, older)


@pytest.mark.parametrize("rotated", [True, False], ids=["new primary key", "same primary key"])
async def test_reseal_binds_material_sealed_before_it_named_its_org(damageable: Damageable, rotated: bool) -> None:
    """Bound to its record id only, the material opened for any org its record was moved to; once
    sealed again (under a new primary key, or the same one: a rotation resumed) it names its own
    org and connector, and a record moved to another org is unreadable there."""
    harness = damageable.storage
    o = f"org-{uuid.uuid4().hex[:8]}"
    record = await _store_token(harness, o)
    await _unbind(damageable, record.id)
    assert await harness.sealed.token_bindings() == {"recordIdOnly": 1}
    if rotated:
        KEYS.ring = KEYS.ring.rotated("k2")
    told: list[str] = []
    assert await harness.sealed.reseal(damaged=told.append) == 1
    assert told == []
    assert await harness.sealed.token_bindings() == {"orgAndConnector": 1}
    assert await harness.sealed.reseal() == 0  # done: nothing left to bind
    async with harness.uow() as uow:
        found = await uow.tokens.get_for_connector(o, record.connector_key)
    assert found is not None and found.tokens.refresh_token == "RT-KEPT" and found.version == record.version

    await damageable.damage(record.id, "org_id")  # moved to another org: its columns and metadata
    async with harness.uow() as uow:
        with pytest.raises(UnreadableRecord):
            await uow.tokens.get_for_connector(f"moved-{record.id}", record.connector_key)


@pytest.mark.parametrize(
    ("material", "moved"),
    [("unbound", "org_id column"), ("bound", "org_id"), ("bound", "org_id column")],
)
async def test_a_record_that_does_not_name_the_org_it_was_sealed_for_is_told_and_left_as_it_is(
    damageable: Damageable, material: str, moved: str
) -> None:
    """Its columns name another org than its metadata, or its material names another org than
    both: binding it (or sealing it again) would hand its tokens to another org. It is told as
    damaged and left exactly as it was, and the other records are still sealed again."""
    harness = damageable.storage
    o = f"org-{uuid.uuid4().hex[:8]}"
    record = await _store_token(harness, o)
    other = await _store_token(harness, o, key="onedrive")
    if material == "unbound":
        await _unbind(damageable, record.id)
        await _unbind(damageable, other.id)
    await damageable.damage(record.id, moved)
    stored = await damageable.material(record.id)
    KEYS.ring = KEYS.ring.rotated("k2")

    told: list[str] = []
    assert await harness.sealed.reseal(damaged=told.append) == 1  # the other record
    assert told == [f"/tokens/{record.id}"]
    assert await damageable.material(record.id) == stored
    expected = {"recordIdOnly": 1, "orgAndConnector": 1} if material == "unbound" else {"orgAndConnector": 2}
    assert await harness.sealed.token_bindings() == expected  # the other one bound, this one as it was
    assert (await harness.sealed.census())["tokens"] == {"k1": 1, "k2": 1}
    with pytest.raises(CryptoError, match=f"cannot re-encrypt the value at '/tokens/{record.id}'") as refused:
        await harness.sealed.reseal()  # without a listener: an error naming it, never its tokens
    assert "secret-value" not in str(refused.value) and "RT-KEPT" not in str(refused.value)
