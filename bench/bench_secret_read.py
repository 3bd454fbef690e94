"""Secret reads: :class:`EncryptedKeyValueStore` over the in-memory key-value store against a
raw ``AESGCM.decrypt`` of the same ciphertext after a dict lookup, in the same process, the
two loops alternated. Figures are microseconds per read.

Two rows: the same secret read again and again (what a hot route does; the store decrypts a
stored value once, see :mod:`adapters.crypto.encrypted_store`), and every read a value the
store has not opened before (a cold read: envelope check and decryption each time)."""

from __future__ import annotations

import os
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapters.crypto import Aead, EncryptedKeyValueStore, Keyring
from adapters.crypto.aead import associated_data
from adapters.factories.memory import memory_kv_store
from bench.harness import Row, alternate, from_pairs

KEY = "/services/connectors/bench-org/confluence/auth"
VALUE = '{"apiToken":"ATATT3xFfGF0-bench-value-of-a-usual-size","email":"a@x.example"}'


async def run(*, smoke: bool) -> list[Row]:
    rounds, n = (2, 200) if smoke else (9, 50_000)
    store = EncryptedKeyValueStore(memory_kv_store(), Aead(Keyring.generate()))
    await store.put(KEY, VALUE)
    got = await store.get(KEY)
    assert got is not None and got.value == VALUE

    raw_key = os.urandom(32)
    aes = AESGCM(raw_key)
    nonce = os.urandom(12)
    aad = associated_data("k1", KEY)
    table = {KEY: (nonce, aes.encrypt(nonce, VALUE.encode(), aad))}

    async def ours() -> dict[str, float]:
        get = store.get
        t = time.perf_counter()
        for _ in range(n):
            await get(KEY)
        return {"us": (time.perf_counter() - t) / n * 1e6}

    async def raw() -> dict[str, float]:
        t = time.perf_counter()
        for _ in range(n):
            iv, sealed = table[KEY]
            aes.decrypt(iv, sealed, aad)
        return {"us": (time.perf_counter() - t) / n * 1e6}

    pairs = await alternate(rounds, ours, raw)
    cold = await _cold(rounds, max(n // 10, 20))
    return [
        cold,
        from_pairs(
            "secret read (EncryptedKeyValueStore over the memory kv)",
            "raw AESGCM decrypt + dict lookup",
            "µs",
            pairs,
            "us",
            "<= 1.5",
            f"{n:,} reads of one value per round",
        ),
    ]


async def _cold(rounds: int, n: int) -> Row:
    inner = memory_kv_store()
    aead = Aead(Keyring.generate())
    keys = [f"{KEY}/{i}" for i in range(n)]
    for key in keys:
        await EncryptedKeyValueStore(inner, aead).put(key, VALUE)
    aes = AESGCM(os.urandom(32))
    table = {}
    for key in keys:
        nonce = os.urandom(12)
        table[key] = (nonce, aes.encrypt(nonce, VALUE.encode(), associated_data("k1", key)))

    async def ours() -> dict[str, float]:
        get = EncryptedKeyValueStore(inner, aead).get  # nothing opened yet
        t = time.perf_counter()
        for key in keys:
            await get(key)
        return {"us": (time.perf_counter() - t) / n * 1e6}

    async def raw() -> dict[str, float]:
        t = time.perf_counter()
        for key in keys:
            iv, sealed = table[key]
            aes.decrypt(iv, sealed, associated_data("k1", key))
        return {"us": (time.perf_counter() - t) / n * 1e6}

    pairs = await alternate(rounds, ours, raw)
    return from_pairs(
        "secret read, cold (each value read once)",
        "raw AESGCM decrypt + dict lookup",
        "µs",
        pairs,
        "us",
        "",
        f"{n:,} distinct values per round; no target: reported to show the decryption path itself",
    )
