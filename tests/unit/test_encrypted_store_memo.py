"""The secret store decrypts a stored value once, and answers from that only what a fresh
decryption would: a changed value, a value moved to another key or a new keyring is decrypted
(or refused) again."""

from __future__ import annotations

from adapters.crypto import Aead, EncryptedKeyValueStore, Keyring
from adapters.crypto.encrypted_store import OPENED_MEMO_SIZE
from adapters.memory import MemoryKeyValueStore
from connector_core.errors import CryptoError


class SwitchableRing:
    """A keyring source whose ring the test replaces (a rotation written by another process)."""

    def __init__(self, ring: Keyring) -> None:
        self.ring = ring

    def current(self) -> Keyring:
        return self.ring


class CountingAead:
    """An :class:`Aead` that counts decryptions."""

    def __init__(self, aead: Aead) -> None:
        self._aead = aead
        self.opened = 0

    @property
    def keyring(self) -> Keyring:
        return self._aead.keyring

    def seal(self, plaintext: bytes, *, path: str) -> str:
        return self._aead.seal(plaintext, path=path)

    def open(self, envelope: str, *, path: str, keyring: Keyring | None = None) -> bytes:
        self.opened += 1
        return self._aead.open(envelope, path=path, keyring=keyring)


async def test_a_value_read_again_is_not_decrypted_again() -> None:
    aead = CountingAead(Aead(Keyring.generate()))
    store = EncryptedKeyValueStore(MemoryKeyValueStore(), aead)  # type: ignore[arg-type]
    await store.put("/a", "secret-a")
    for _ in range(3):
        got = await store.get("/a")
        assert got is not None and got.value == "secret-a"
    assert aead.opened == 1


async def test_a_changed_value_is_read_anew() -> None:
    store = EncryptedKeyValueStore(MemoryKeyValueStore(), Aead(Keyring.generate()))
    await store.put("/a", "one")
    assert (await store.get("/a")).value == "one"  # type: ignore[union-attr]
    await store.put("/a", "two")
    got = await store.get("/a")
    assert got is not None and got.value == "two"


async def test_a_value_copied_to_another_key_still_fails_after_it_was_read() -> None:
    inner = MemoryKeyValueStore()
    store = EncryptedKeyValueStore(inner, Aead(Keyring.generate()))
    await store.put("/a", "secret-a")
    assert (await store.get("/a")).value == "secret-a"  # type: ignore[union-attr]
    stored = await inner.get("/a")
    assert stored is not None
    await inner.put("/b", stored.value)
    try:
        await store.get("/b")
    except CryptoError:
        pass
    else:
        raise AssertionError("a value moved to another key must not decrypt")


async def test_a_keyring_without_the_key_refuses_a_value_read_before() -> None:
    old = Keyring.generate("k1")
    source = SwitchableRing(old)
    store = EncryptedKeyValueStore(MemoryKeyValueStore(), Aead(source))
    await store.put("/a", "secret-a")
    assert (await store.get("/a")).value == "secret-a"  # type: ignore[union-attr]
    source.ring = Keyring.generate("k2")  # k1 retired
    try:
        await store.get("/a")
    except CryptoError as exc:
        assert "k1" in exc.message
    else:
        raise AssertionError("a value under a retired key must not be served from memory")


async def test_the_memo_stays_bounded() -> None:
    store = EncryptedKeyValueStore(MemoryKeyValueStore(), Aead(Keyring.generate()))
    for i in range(OPENED_MEMO_SIZE + 10):
        await store.put(f"/k{i}", str(i))
        assert (await store.get(f"/k{i}")).value == str(i)  # type: ignore[union-attr]
    assert len(store._opened) == OPENED_MEMO_SIZE


async def test_the_same_envelope_stored_again_reads_with_its_new_revision() -> None:
    inner = MemoryKeyValueStore()
    store = EncryptedKeyValueStore(inner, Aead(Keyring.generate()))
    first = await store.put("/a", "secret-a")
    assert (await store.get("/a")).revision == first  # type: ignore[union-attr]
    stored = await inner.get("/a")
    assert stored is not None
    second = await inner.put("/a", stored.value)
    got = await store.get("/a")
    assert got is not None and got.value == "secret-a" and got.revision == second != first
