"""Contract: KeyValueStore, plain and wrapped in the encryption layer."""

from __future__ import annotations

import uuid

import pytest

from adapters.crypto import Aead, EncryptedKeyValueStore, Keyring
from connector_core.errors import Conflict
from connector_core.ports.kv_store import KeyValueStore


@pytest.fixture(params=["plain", "encrypted"])
def kv(request: pytest.FixtureRequest, kv_store: KeyValueStore) -> KeyValueStore:
    if request.param == "plain":
        return kv_store
    return EncryptedKeyValueStore(kv_store, Aead(Keyring.generate()))


def prefix() -> str:
    return f"/services/test/{uuid.uuid4().hex[:8]}/"


async def test_put_get_delete(kv: KeyValueStore) -> None:
    p = prefix()
    assert await kv.get(p + "a") is None
    r1 = await kv.put(p + "a", "one")
    got = await kv.get(p + "a")
    assert got is not None and got.value == "one" and got.revision == r1
    r2 = await kv.put(p + "a", "two")
    assert r2 > r1
    assert await kv.delete(p + "a") is True
    assert await kv.delete(p + "a") is False
    assert await kv.get(p + "a") is None


async def test_compare_and_swap(kv: KeyValueStore) -> None:
    p = prefix()
    r1 = await kv.put(p + "k", "v1", expected_revision=0)
    with pytest.raises(Conflict):
        await kv.put(p + "k", "v-other", expected_revision=0)
    r2 = await kv.put(p + "k", "v2", expected_revision=r1)
    with pytest.raises(Conflict):
        await kv.put(p + "k", "v3", expected_revision=r1)
    with pytest.raises(Conflict):
        await kv.delete(p + "k", expected_revision=r1)
    got = await kv.get(p + "k")
    assert got is not None and got.value == "v2"
    assert await kv.delete(p + "k", expected_revision=r2)


async def test_list_prefix_is_exact(kv: KeyValueStore) -> None:
    p = prefix()
    await kv.put(p + "x/1", "a")
    await kv.put(p + "x/2", "b")
    await kv.put(p + "x_/3", "c")  # LIKE wildcards must not leak in
    await kv.put(p + "y", "d")
    listed = await kv.list_prefix(p + "x/")
    assert {k: v.value for k, v in listed.items()} == {p + "x/1": "a", p + "x/2": "b"}


async def test_encrypted_values_are_ciphertext_underneath(kv_store: KeyValueStore) -> None:
    store = EncryptedKeyValueStore(kv_store, Aead(Keyring.generate()))
    p = prefix()
    await store.put(p + "secret", "PLANTED-CLIENT-SECRET")
    raw = await kv_store.get(p + "secret")
    assert raw is not None and "PLANTED-CLIENT-SECRET" not in raw.value
    got = await store.get(p + "secret")
    assert got is not None and got.value == "PLANTED-CLIENT-SECRET"
