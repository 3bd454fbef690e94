"""Secret reads: :class:`EncryptedKeyValueStore` over the in-memory key-value store against a
raw ``AESGCM.decrypt`` of the same ciphertext after a dict lookup, in the same process, the
two loops alternated. Figures are microseconds per read."""

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
    return [
        from_pairs(
            "secret read (EncryptedKeyValueStore over the memory kv)",
            "raw AESGCM decrypt + dict lookup",
            "µs",
            pairs,
            "us",
            "<= 1.5",
            f"{n:,} reads per round",
        )
    ]
