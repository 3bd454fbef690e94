"""One-time console sign-in links on every secret store: a link signs in once, even when two
redeem it at the same time, and not after it expired."""

from __future__ import annotations

import asyncio
import logging

import pytest

from adapters.crypto import Aead, EncryptedKeyValueStore, Keyring
from connector_core.ports.kv_store import KeyValueStore
from entrypoints.console.links import LINKS_PREFIX, issue_link, redeem_link

NOW = 1_900_000_000


async def test_a_link_signs_in_once(kv_store: KeyValueStore) -> None:
    token = await issue_link(kv_store, org_id="acme", user_id="alice", email="a@acme.example", now=NOW, ttl=60)
    principal = await redeem_link(kv_store, token, NOW + 59)
    assert principal is not None
    assert (principal.org_id, principal.user_id, principal.email) == ("acme", "alice", "a@acme.example")
    assert principal.claims["isAdmin"] is True
    assert await redeem_link(kv_store, token, NOW + 59) is None


async def test_two_redeeming_at_once_get_one_session(kv_store: KeyValueStore) -> None:
    token = await issue_link(kv_store, org_id="acme", user_id="alice", email=None, now=NOW, ttl=60)
    results = await asyncio.gather(*(redeem_link(kv_store, token, NOW + 1) for _ in range(5)))
    assert sum(r is not None for r in results) == 1


async def test_an_expired_link_is_refused_and_forgotten(kv_store: KeyValueStore) -> None:
    token = await issue_link(kv_store, org_id="acme", user_id="alice", email=None, now=NOW, ttl=60)
    assert await redeem_link(kv_store, token, NOW + 60) is None
    assert await kv_store.list_prefix(LINKS_PREFIX) == {}


async def test_only_the_hash_is_stored_and_unused_expired_links_are_cleaned_up(kv_store: KeyValueStore) -> None:
    old = await issue_link(kv_store, org_id="acme", user_id="alice", email=None, now=NOW, ttl=60)
    fresh = await issue_link(kv_store, org_id="acme", user_id="bob", email=None, now=NOW + 120, ttl=60)
    stored = await kv_store.list_prefix(LINKS_PREFIX)
    assert len(stored) == 1  # the expired one went when the next was issued
    assert all(old not in k and fresh not in k and fresh not in v.value for k, v in stored.items())
    assert await redeem_link(kv_store, "not-a-token", NOW) is None


async def test_a_link_that_cannot_be_decrypted_is_deleted_and_new_links_are_still_issued(
    kv_store: KeyValueStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = EncryptedKeyValueStore(kv_store, Aead(Keyring.generate()))
    kept = await issue_link(store, org_id="acme", user_id="alice", email=None, now=NOW, ttl=600)
    junk = LINKS_PREFIX + "junk"
    await kv_store.put(junk, "NOT-AN-ENVELOPE")  # a damaged record
    lost = LINKS_PREFIX + "lost"  # one sealed under a key the deployment no longer holds
    await kv_store.put(lost, Aead(Keyring.generate()).seal(b'{"SEALED-ELSEWHERE": 1}', path=lost))

    with caplog.at_level(logging.WARNING, logger="connector_manager.console"):
        token = await issue_link(store, org_id="acme", user_id="bob", email=None, now=NOW + 1, ttl=60)

    stored = await kv_store.list_prefix(LINKS_PREFIX)
    assert junk not in stored and lost not in stored and len(stored) == 2  # the two readable links stay
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(str(getattr(r, "path", "")) for r in warned) == [junk, lost]
    assert all(junk in r.getMessage() or lost in r.getMessage() for r in warned)
    assert "NOT-AN-ENVELOPE" not in caplog.text and "SEALED-ELSEWHERE" not in caplog.text
    for t, user in ((kept, "alice"), (token, "bob")):
        principal = await redeem_link(store, t, NOW + 2)
        assert principal is not None and principal.user_id == user


async def test_a_link_under_a_key_this_process_does_not_hold_yet_is_left_for_those_that_do(
    kv_store: KeyValueStore,
) -> None:
    # a key rotation under way: the new key k2 is primary in the processes restarted already,
    # and a process still on k1 alone issues a link meanwhile
    old = Keyring.generate("k1")
    new = old.rotated("k2")
    restarted, not_yet = EncryptedKeyValueStore(kv_store, Aead(new)), EncryptedKeyValueStore(kv_store, Aead(old))
    token = await issue_link(restarted, org_id="acme", user_id="alice", email=None, now=NOW, ttl=600)
    await issue_link(not_yet, org_id="acme", user_id="bob", email=None, now=NOW + 1, ttl=600)
    principal = await redeem_link(restarted, token, NOW + 2)
    assert principal is not None and principal.user_id == "alice"
