"""Unit tests for the encryption-at-rest layer (adapters.crypto)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import string
from collections.abc import Mapping

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.crypto import (
    AAD_PREFIX,
    Aead,
    EncryptedKeyValueStore,
    Keyring,
    is_legacy,
)
from adapters.crypto.aead import seal_legacy_for_tests
from adapters.memory import MemoryKeyValueStore
from connector_core.errors import Conflict, CryptoError, ValidationError
from connector_core.ports.kv_store import KeyValueStore, Versioned

# -- fixtures and helpers ----------------------------------------------------------------------

KEY1 = bytes(range(32))
KEY2 = bytes(range(100, 132))
KEY1_B64 = base64.b64encode(KEY1).decode()
KEY2_B64 = base64.b64encode(KEY2).decode()
LEGACY_SECRET = "old-service SECRET_KEY \u00e9 2019"
MASTER = "correct horse battery staple"

# Produced with Node.js (the old service's stack), independently of this code base:
#   key = sha256(LEGACY_SECRET utf-8); createCipheriv("aes-256-gcm", key, iv)
#   iv.hex + ":" + ciphertext.hex + ":" + getAuthTag().hex
NODE_LEGACY_VALUE = (
    "00112233445566778899aabb:"
    "f4761891100a33c60e01f42ddc0dd9dafb849cf860b0c7607921582aab2ace6391f75eca:"
    "c3cef43320b3b3bb6ee060496ee94046"
)
NODE_LEGACY_PLAINTEXT = b'{"access_token":"ya29.legacy-token"}'
# Node.js: hkdfSync("sha256", MASTER, <empty salt>, "connector-manager/aead/v1", 32), base64.
NODE_HKDF_KEY_B64 = "maqM2YgKXAT+/e5uIB503uuXtqxVFgXGMlow7Ws0bK8="

ENVELOPE_CHARS = string.ascii_letters + string.digits + "-_:+/=. |"

paths = st.text(min_size=0, max_size=80)
payloads = st.binary(min_size=0, max_size=512)


def ring12(*, legacy: bool = False) -> Keyring:
    return Keyring.parse(f"k1:{KEY1_B64},k2:{KEY2_B64}", legacy_secret=LEGACY_SECRET if legacy else None)


def secret_forms(key: bytes) -> list[str]:
    """Ways key material could leak into a string."""
    return [
        base64.b64encode(key).decode(),
        base64.urlsafe_b64encode(key).decode().rstrip("="),
        key.hex(),
        repr(key),
    ]


def assert_no_leak(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


def make_store(keyring: Keyring) -> tuple[MemoryKeyValueStore, EncryptedKeyValueStore]:
    inner = MemoryKeyValueStore()
    return inner, EncryptedKeyValueStore(inner, Aead(keyring))


async def test_the_encrypted_store_is_a_key_value_store_over_one() -> None:
    # the annotations are checked by mypy (tests are type-checked); the round trip here
    inner: KeyValueStore = MemoryKeyValueStore()
    store: KeyValueStore = EncryptedKeyValueStore(inner, Aead(Keyring.generate()))
    revision = await store.put("/p", "value")
    assert await store.get("/p") == Versioned("value", revision)
    stored = await inner.get("/p")
    assert stored is not None and stored.value.startswith("v1:k1:")


# -- Aead: round trip, envelope format, nonces -------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(plaintext=payloads, path=paths)
def test_round_trip_arbitrary_bytes_and_paths(plaintext: bytes, path: str) -> None:
    aead = Aead(ring12())
    envelope = aead.seal(plaintext, path=path)
    assert envelope.isascii()
    assert aead.open(envelope, path=path) == plaintext


def test_envelope_format_matches_an_independent_implementation() -> None:
    aead = Aead(Keyring({"k1": KEY1}))
    envelope = aead.seal(b"hello", path="/services/connectors/x")
    version, key_id, nonce_b64, sealed_b64 = envelope.split(":")
    assert (version, key_id) == ("v1", "k1")
    assert "=" not in envelope

    def unb64(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    nonce = unb64(nonce_b64)
    assert len(nonce) == 12
    aad = b"connector-manager/v1|k1|/services/connectors/x"
    assert AAD_PREFIX == b"connector-manager/v1|"
    assert AESGCM(KEY1).decrypt(nonce, unb64(sealed_b64), aad) == b"hello"

    # ...and an envelope built by hand is readable.
    nonce = b"\x07" * 12
    sealed = AESGCM(KEY1).encrypt(nonce, b"by hand", b"connector-manager/v1|k1|/p")
    by_hand = "v1:k1:{}:{}".format(
        base64.urlsafe_b64encode(nonce).decode().rstrip("="),
        base64.urlsafe_b64encode(sealed).decode().rstrip("="),
    )
    assert aead.open(by_hand, path="/p") == b"by hand"


def test_nonces_differ_for_the_same_plaintext() -> None:
    aead = Aead(ring12())
    envelopes = {aead.seal(b"same secret", path="/p") for _ in range(200)}
    assert len(envelopes) == 200
    nonces = {e.split(":")[2] for e in envelopes}
    assert len(nonces) == 200


def test_writes_use_the_primary_key() -> None:
    assert Aead(ring12()).seal(b"x", path="/p").startswith("v1:k1:")
    ring21 = Keyring.parse(f"k2:{KEY2_B64},k1:{KEY1_B64}")
    assert Aead(ring21).seal(b"x", path="/p").startswith("v1:k2:")


# -- Aead: tampering, wrong path, key id swap, unknown key -------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.data(), plaintext=payloads, path=paths)
def test_tampering_any_character_fails(data: st.DataObject, plaintext: bytes, path: str) -> None:
    aead = Aead(ring12(legacy=True))
    envelope = aead.seal(plaintext, path=path)
    index = data.draw(st.integers(0, len(envelope) - 1))
    replacement = data.draw(st.sampled_from(ENVELOPE_CHARS).filter(lambda c: c != envelope[index]))
    tampered = envelope[:index] + replacement + envelope[index + 1 :]
    with pytest.raises(CryptoError):
        aead.open(tampered, path=path)


def test_tampering_every_position_exhaustively() -> None:
    aead = Aead(ring12(legacy=True))
    path = "/services/connectors/github/token"
    envelope = aead.seal(b"s3cr3t", path=path)
    for index, original in enumerate(envelope):
        for replacement in ENVELOPE_CHARS + "\u00e9\x00":
            if replacement == original:
                continue
            tampered = envelope[:index] + replacement + envelope[index + 1 :]
            with pytest.raises(CryptoError):
                aead.open(tampered, path=path)
        # deleting a character, or inserting one, fails as well
        with pytest.raises(CryptoError):
            aead.open(envelope[:index] + envelope[index + 1 :], path=path)
        with pytest.raises(CryptoError):
            aead.open(envelope[:index] + "A" + envelope[index:], path=path)
    for cut in range(len(envelope)):
        with pytest.raises(CryptoError):
            aead.open(envelope[:cut], path=path)


@settings(max_examples=100, deadline=None)
@given(plaintext=payloads, path=paths, other=paths)
def test_wrong_path_fails(plaintext: bytes, path: str, other: str) -> None:
    aead = Aead(ring12())
    envelope = aead.seal(plaintext, path=path)
    if other != path:
        with pytest.raises(CryptoError) as info:
            aead.open(envelope, path=other)
        assert repr(other) in str(info.value)


def test_swapped_key_id_fails_even_with_the_same_key_material() -> None:
    # Same bytes under two ids: only the associated data can tell the swap.
    aead = Aead(Keyring({"k1": KEY1, "k2": KEY1}))
    envelope = aead.seal(b"payload", path="/p")
    assert envelope.startswith("v1:k1:")
    swapped = "v1:k2:" + envelope.removeprefix("v1:k1:")
    with pytest.raises(CryptoError, match="authentication failed"):
        aead.open(swapped, path="/p")


def test_swapped_key_id_with_different_keys_fails() -> None:
    aead = Aead(ring12())
    envelope = aead.seal(b"payload", path="/p")
    with pytest.raises(CryptoError):
        aead.open("v1:k2:" + envelope.removeprefix("v1:k1:"), path="/p")


def test_unknown_key_id_fails_and_names_it() -> None:
    sealed = Aead(Keyring({"k9": KEY2})).seal(b"payload", path="/p")
    with pytest.raises(CryptoError, match="unknown key id 'k9'") as info:
        Aead(Keyring({"k1": KEY1})).open(sealed, path="/p")
    assert "'/p'" in str(info.value)
    assert info.value.metadata["path"] == "/p"


@pytest.mark.parametrize(
    "envelope",
    [
        "",
        "plaintext secret",
        "v1:k1:abc",
        "v1:k1:AAAAAAAAAAAAAAAA:",
        "v2:k1:AAAAAAAAAAAAAAAA:" + "A" * 30,
        "v1:k|1:AAAAAAAAAAAAAAAA:" + "A" * 30,
        "v1:k1:AAAAAAAAAAAAAAAA:" + "A" * 30 + ":extra",
        "v1:k1:AAAA:" + "A" * 30,
        "v1:k1:AAAAAAAAAAAAAAAA:AAAA",
        "v1:k1:AAAAAAAAAAAAAAA=:" + "A" * 30,
        "v1:k1:AAAAAAAAAAAAAAAA:" + "A" * 29 + "\u00e9",
        "00112233445566778899AABB:00:" + "00" * 16,  # upper-case hex is not the legacy format
        "0011:00:" + "00" * 16,  # legacy shape, IV too short for AES-GCM
    ],
)
def test_malformed_envelopes_fail(envelope: str) -> None:
    with pytest.raises(CryptoError, match="'/p'"):
        Aead(ring12(legacy=True)).open(envelope, path="/p")


def test_non_canonical_base64_is_rejected() -> None:
    aead = Aead(ring12())
    envelope = aead.seal(b"x", path="/p")  # 1 + 16 bytes sealed: 23 chars, 2 unused bits
    head, sealed = envelope.rsplit(":", 1)
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    last = alphabet.index(sealed[-1])
    sibling = alphabet[last ^ 0b01]  # differs only in an unused low bit
    variant = sealed[:-1] + sibling

    def lenient(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    assert lenient(variant) == lenient(sealed)  # a lenient decoder would accept it
    with pytest.raises(CryptoError, match="malformed"):
        aead.open(f"{head}:{variant}", path="/p")
    with pytest.raises(CryptoError, match="malformed"):
        aead.open(f"{head}:{sealed}=", path="/p")


# -- legacy format -------------------------------------------------------------------------------


def inline_legacy_seal(plaintext: bytes, secret: str, iv: bytes) -> str:
    """The old service's format, written here independently of adapters.crypto."""
    key = hashlib.sha256(secret.encode("utf-8")).digest()
    sealed = AESGCM(key).encrypt(iv, plaintext, None)
    return f"{iv.hex()}:{sealed[:-16].hex()}:{sealed[-16:].hex()}"


def inline_legacy_open(envelope: str, secret: str) -> bytes:
    iv, ciphertext, tag = (bytes.fromhex(part) for part in envelope.split(":"))
    return AESGCM(hashlib.sha256(secret.encode("utf-8")).digest()).decrypt(iv, ciphertext + tag, None)


def test_legacy_value_produced_by_nodejs_is_readable() -> None:
    aead = Aead(ring12(legacy=True))
    assert is_legacy(NODE_LEGACY_VALUE)
    assert aead.open(NODE_LEGACY_VALUE, path="/any/path") == NODE_LEGACY_PLAINTEXT
    assert aead.needs_rewrap(NODE_LEGACY_VALUE)


@settings(max_examples=100, deadline=None)
@given(plaintext=payloads, path=paths, iv=st.binary(min_size=12, max_size=12))
def test_legacy_helper_and_inline_implementation_agree(plaintext: bytes, path: str, iv: bytes) -> None:
    aead = Aead(ring12(legacy=True))
    from_helper = seal_legacy_for_tests(plaintext, legacy_secret=LEGACY_SECRET, iv=iv)
    from_inline = inline_legacy_seal(plaintext, LEGACY_SECRET, iv)
    assert from_helper == from_inline
    assert is_legacy(from_helper)
    assert aead.open(from_helper, path=path) == plaintext
    assert aead.open(from_inline, path=path) == plaintext
    random_iv = seal_legacy_for_tests(plaintext, legacy_secret=LEGACY_SECRET)
    assert inline_legacy_open(random_iv, LEGACY_SECRET) == plaintext
    assert aead.open(random_iv, path=path) == plaintext


def test_legacy_without_secret_or_with_wrong_secret_fails() -> None:
    value = inline_legacy_seal(b"tok", LEGACY_SECRET, b"\x01" * 12)
    with pytest.raises(CryptoError, match="no legacy secret"):
        Aead(ring12()).open(value, path="/p")
    wrong = Keyring({"k1": KEY1}, legacy_secret="another secret")
    with pytest.raises(CryptoError, match="authentication failed"):
        Aead(wrong).open(value, path="/p")
    assert Aead(ring12(legacy=True).without_legacy()).keyring.has_legacy is False


def test_legacy_tampering_fails_exhaustively() -> None:
    aead = Aead(ring12(legacy=True))
    value = inline_legacy_seal(b"legacy token", LEGACY_SECRET, b"\x02" * 12)
    for index, original in enumerate(value):
        for replacement in "0123456789abcdefABCDEF:g":
            if replacement != original:
                tampered = value[:index] + replacement + value[index + 1 :]
                with pytest.raises(CryptoError):
                    aead.open(tampered, path="/p")


def test_is_legacy_and_needs_rewrap() -> None:
    ring = ring12(legacy=True)  # primary k1
    aead = Aead(ring)
    assert not is_legacy(aead.seal(b"x", path="/p"))
    assert not aead.needs_rewrap(aead.seal(b"x", path="/p"))
    assert aead.needs_rewrap(Aead(Keyring({"k2": KEY2})).seal(b"x", path="/p"))
    assert aead.needs_rewrap(seal_legacy_for_tests(b"x", legacy_secret=LEGACY_SECRET))
    assert not is_legacy("v1:k1:aa:bb")
    assert not is_legacy("plain")
    with pytest.raises(CryptoError):
        aead.needs_rewrap("plaintext that is not an envelope")


def test_rewrap_single_value() -> None:
    aead = Aead(Keyring.parse(f"k2:{KEY2_B64},k1:{KEY1_B64}", legacy_secret=LEGACY_SECRET))
    old = Aead(Keyring({"k1": KEY1})).seal(b"v", path="/p")
    new = aead.rewrap(old, path="/p")
    assert new.startswith("v1:k2:") and aead.open(new, path="/p") == b"v"
    assert aead.key_id_of(new) == "k2"
    assert aead.key_id_of(NODE_LEGACY_VALUE) is None


# -- Keyring -------------------------------------------------------------------------------------


def test_from_master_secret_matches_an_independent_hkdf() -> None:
    ring = Keyring.from_master_secret(MASTER)
    assert ring.primary_id == "k1"
    assert ring.to_spec() == f"k1:{NODE_HKDF_KEY_B64}"
    assert Keyring.from_master_secret(MASTER.encode(), key_id="k7").to_spec() == (f"k7:{NODE_HKDF_KEY_B64}")
    assert Keyring.from_master_secret("other").to_spec() != ring.to_spec()


def test_parse_and_to_spec_round_trip() -> None:
    ring = Keyring.parse(f" k2:{KEY2_B64} , k1:{KEY1_B64} ,")
    assert ring.primary_id == "k2"
    assert ring.key_ids == ("k2", "k1")
    assert "k1" in ring and "k3" not in ring
    assert ring.to_spec() == f"k2:{KEY2_B64},k1:{KEY1_B64}"
    again = Keyring.parse(ring.to_spec())
    assert Aead(again).open(Aead(ring).seal(b"x", path="/p"), path="/p") == b"x"
    # URL-safe alphabet and missing padding are accepted too.
    urlsafe = base64.urlsafe_b64encode(KEY2).decode().rstrip("=")
    assert Keyring.parse(f"k2:{urlsafe}").to_spec() == f"k2:{KEY2_B64}"


def test_generate_gives_distinct_random_keys() -> None:
    a, b = Keyring.generate(), Keyring.generate("k5")
    assert a.to_spec() != b.to_spec().replace("k5:", "k1:")
    assert b.primary_id == "k5"
    assert len(base64.b64decode(a.to_spec().split(":", 1)[1])) == 32
    assert Keyring.parse(a.to_spec()).to_spec() == a.to_spec()


def test_rotated_adds_a_new_primary_and_keeps_the_rest() -> None:
    ring = Keyring({"k1": KEY1}, legacy_secret=LEGACY_SECRET)
    rotated = ring.rotated("k2", KEY2)
    assert rotated.key_ids == ("k2", "k1")
    assert rotated.has_legacy
    assert ring.key_ids == ("k1",)  # immutable
    with pytest.raises(ValidationError, match="'k1'"):
        rotated.rotated("k1")


def short_key(n: int) -> str:
    return base64.b64encode(b"\xab" * n).decode()


@pytest.mark.parametrize(
    ("spec", "expected", "material"),
    [
        ("", "no key", None),
        (" , ", "no key", None),
        (f"k1:{short_key(31)}", "'k1' must decode to exactly 32 bytes", short_key(31)),
        (f"k1:{KEY1_B64},k2:{short_key(33)}", "'k2' must decode to exactly 32", short_key(33)),
        ("k3:not*base64!SECRETSECRET", "'k3' is not valid base64", "SECRETSECRET"),
        ("k3:", "'k3' is not valid base64", None),
        (f"k1:{KEY1_B64},k1:{KEY2_B64}", "'k1' appears more than once", KEY2_B64),
        (KEY1_B64, "entry #1 must look like", KEY1_B64),
        (f"{KEY1_B64}:k1", "entry #1 has an invalid key id", KEY1_B64),
        (f"k1:{KEY1_B64},bad id:{KEY2_B64}", "entry #2 has an invalid key id", KEY2_B64),
    ],
)
def test_parse_errors_name_the_key_id_but_never_the_key(spec: str, expected: str, material: str | None) -> None:
    with pytest.raises(ValidationError, match=expected) as info:
        Keyring.parse(spec)
    error = info.value
    everything = f"{error} {error!r} {error.metadata} {error.errors} {error.args}"
    for key in (KEY1_B64, KEY2_B64, *([material] if material else [])):
        assert key not in everything
    assert error.errors and error.errors[0]["path"].startswith("keyring")


def test_constructor_validation() -> None:
    with pytest.raises(ValidationError):
        Keyring({})
    with pytest.raises(ValidationError, match="'k1' must be exactly 32 bytes"):
        Keyring({"k1": b"short"})
    with pytest.raises(ValidationError, match="invalid key id"):
        Keyring({"k:1": KEY1})
    with pytest.raises(ValidationError, match="primary"):
        Keyring({"k1": KEY1}, primary="k2")
    with pytest.raises(ValidationError, match="master secret"):
        Keyring.from_master_secret("")
    with pytest.raises(ValidationError, match="legacy secret"):
        Keyring({"k1": KEY1}, legacy_secret="")
    assert Keyring({"k1": KEY1, "k2": KEY2}, primary="k2").key_ids == ("k2", "k1")


def test_reprs_show_key_ids_only() -> None:
    ring = Keyring.parse(f"k2:{KEY2_B64},k1:{KEY1_B64}", legacy_secret=LEGACY_SECRET)
    master = Keyring.from_master_secret(MASTER, legacy_secret=LEGACY_SECRET)
    _inner, store = make_store(ring)
    texts = [repr(ring), str(ring), repr(Aead(ring)), repr(store), str(store), repr(master)]
    forbidden = [
        *secret_forms(KEY1),
        *secret_forms(KEY2),
        *secret_forms(base64.b64decode(NODE_HKDF_KEY_B64)),
        *secret_forms(hashlib.sha256(LEGACY_SECRET.encode()).digest()),
        LEGACY_SECRET,
        MASTER,
    ]
    for text in texts:
        assert_no_leak(text, *forbidden)
    assert repr(ring) == "Keyring(primary='k2', key_ids=('k2', 'k1'), legacy=True)"
    assert "'k2'" in repr(store) and "MemoryKeyValueStore" in repr(store)


def test_keyring_cannot_be_pickled_and_copies_are_itself() -> None:
    import copy
    import pickle

    ring = ring12()
    with pytest.raises(TypeError):
        pickle.dumps(ring)
    assert copy.deepcopy(ring) is ring and copy.copy(ring) is ring


# -- EncryptedKeyValueStore ------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(value=st.text(max_size=300), key=paths)
def test_store_round_trip(value: str, key: str) -> None:
    async def scenario() -> None:
        inner, store = make_store(ring12())
        revision = await store.put(key, value)
        got = await store.get(key)
        assert got == Versioned(value, revision)
        assert inner.raw()[key].revision == revision
        assert inner.raw()[key].value.startswith("v1:k1:")
        listed = await store.list_prefix("")
        assert listed == {key: Versioned(value, revision)}

    asyncio.run(scenario())


async def test_inner_store_holds_no_plaintext() -> None:
    planted = "ya29.PLANTED-refresh-token-0123456789"
    inner, store = make_store(ring12())
    await store.put("/services/connectors/google/tokens", f'{{"refresh_token": "{planted}"}}')
    await store.put("/services/connectors/google/raw", planted)
    for key, stored in inner.raw().items():
        raw = stored.value
        assert planted not in raw
        assert "refresh_token" not in raw
        assert planted.encode().hex() not in raw
        assert base64.b64encode(planted.encode()).decode()[:20] not in raw
        assert base64.urlsafe_b64encode(planted.encode()).decode()[:20] not in raw
        assert raw.startswith("v1:k1:") and key not in raw


async def test_get_missing_and_delete() -> None:
    _inner, store = make_store(ring12())
    assert await store.get("/nope") is None
    await store.put("/a", "1")
    assert await store.delete("/a") is True
    assert await store.delete("/a") is False
    assert await store.get("/a") is None


async def test_cas_is_passed_through() -> None:
    inner, store = make_store(ring12())
    rev = await store.put("/a", "one", expected_revision=0)
    with pytest.raises(Conflict):
        await store.put("/a", "again", expected_revision=0)
    with pytest.raises(Conflict):
        await store.put("/a", "stale", expected_revision=rev + 100)
    rev2 = await store.put("/a", "two", expected_revision=rev)
    assert rev2 > rev
    assert await store.get("/a") == Versioned("two", rev2)
    with pytest.raises(Conflict):
        await store.delete("/a", expected_revision=rev)
    assert await store.delete("/a", expected_revision=rev2) is True
    assert inner.raw() == {}


async def test_list_prefix_decrypts_only_the_prefix() -> None:
    _inner, store = make_store(ring12())
    await store.put("/c/a", "A")
    await store.put("/c/b", "B")
    await store.put("/other", "O")
    listed = await store.list_prefix("/c/")
    assert {k: v.value for k, v in listed.items()} == {"/c/a": "A", "/c/b": "B"}


async def test_value_copied_to_another_key_fails_to_decrypt() -> None:
    inner, store = make_store(ring12())
    await store.put("/tenant-a/token", "secret-a")
    await inner.put("/tenant-b/token", inner.raw()["/tenant-a/token"].value)
    with pytest.raises(CryptoError, match="'/tenant-b/token'") as info:
        await store.get("/tenant-b/token")
    assert "secret-a" not in str(info.value)
    with pytest.raises(CryptoError):
        await store.list_prefix("/tenant-")


async def test_plaintext_in_the_inner_store_is_refused() -> None:
    inner, store = make_store(ring12())
    await inner.put("/p", "a plaintext secret")
    with pytest.raises(CryptoError) as info:
        await store.get("/p")
    assert "a plaintext secret" not in str(info.value)


async def test_key_rotation_and_rewrap_all() -> None:
    old_ring = Keyring({"k1": KEY1})
    inner, old_store = make_store(old_ring)
    for i in range(5):
        await old_store.put(f"/c/{i}", f"value-{i}")
    await old_store.put("/elsewhere", "untouched")

    new_ring = Keyring.parse(f"k2:{KEY2_B64},k1:{KEY1_B64}")
    new_store = EncryptedKeyValueStore(inner, Aead(new_ring))
    # old key id still readable
    assert (await new_store.get("/c/0")) is not None
    assert {k: v.value for k, v in (await new_store.list_prefix("/c/")).items()} == {
        f"/c/{i}": f"value-{i}" for i in range(5)
    }
    # new writes use the new primary
    await new_store.put("/c/new", "fresh")
    assert inner.raw()["/c/new"].value.startswith("v1:k2:")

    assert await new_store.rewrap_all("/c/") == 5
    assert all(v.value.startswith("v1:k2:") for k, v in inner.raw().items() if k.startswith("/c/"))
    assert inner.raw()["/elsewhere"].value.startswith("v1:k1:")
    assert await new_store.rewrap_all("/c/") == 0  # idempotent

    # the old key can now be dropped for that prefix
    only_new = EncryptedKeyValueStore(inner, Aead(Keyring({"k2": KEY2})))
    values = {k: v.value for k, v in (await only_new.list_prefix("/c/")).items()}
    assert values == {**{f"/c/{i}": f"value-{i}" for i in range(5)}, "/c/new": "fresh"}


async def test_rewrap_all_migrates_legacy_values() -> None:
    inner = MemoryKeyValueStore()
    await inner.put("/c/a", inline_legacy_seal(b"legacy-a", LEGACY_SECRET, b"\x03" * 12))
    await inner.put("/c/b", NODE_LEGACY_VALUE)
    store = EncryptedKeyValueStore(inner, Aead(ring12(legacy=True)))
    assert (await store.get("/c/b")) == Versioned(NODE_LEGACY_PLAINTEXT.decode(), 2)
    assert await store.rewrap_all("/c/") == 2
    assert all(v.value.startswith("v1:k1:") for v in inner.raw().values())
    no_legacy = EncryptedKeyValueStore(inner, Aead(ring12()))
    assert await no_legacy.get("/c/a") == Versioned("legacy-a", inner.raw()["/c/a"].revision)


class RacingKV(MemoryKeyValueStore):
    """Lets a concurrent writer update ``victim`` right after the listing."""

    def __init__(self, victim: str, writer: Aead) -> None:
        super().__init__()
        self.victim = victim
        self.writer = writer
        self.raced = False

    async def list_prefix(self, prefix: str) -> Mapping[str, Versioned]:
        listing = await super().list_prefix(prefix)
        if not self.raced:
            self.raced = True
            await self.put(self.victim, self.writer.seal(b"concurrent", path=self.victim))
        return listing


async def test_rewrap_all_does_not_overwrite_a_concurrent_writer() -> None:
    new_ring = Keyring.parse(f"k2:{KEY2_B64},k1:{KEY1_B64}")
    inner = RacingKV("/c/a", Aead(new_ring))
    old = EncryptedKeyValueStore(inner, Aead(Keyring({"k1": KEY1})))
    await old.put("/c/a", "old-a")
    await old.put("/c/b", "old-b")
    store = EncryptedKeyValueStore(inner, Aead(new_ring))
    assert await store.rewrap_all("/c/") == 1  # /c/a was skipped on Conflict
    values = {k: v.value for k, v in (await store.list_prefix("/c/")).items()}
    assert values == {"/c/a": "concurrent", "/c/b": "old-b"}
    assert inner.raw()["/c/b"].value.startswith("v1:k2:")


async def test_rewrap_all_names_the_undecryptable_key() -> None:
    inner, store = make_store(ring12())
    await inner.put("/c/bad", "not encrypted SECRETVALUE")
    with pytest.raises(CryptoError, match="'/c/bad'") as info:
        await store.rewrap_all("/c/")
    assert "SECRETVALUE" not in str(info.value)
    assert info.value.metadata["path"] == "/c/bad"


# -- error messages never leak ----------------------------------------------------------------


async def test_error_messages_contain_no_key_plaintext_or_ciphertext() -> None:
    ring = ring12(legacy=True)
    aead = Aead(ring)
    plaintext = b"TOP-SECRET-PLAINTEXT"
    envelope = aead.seal(plaintext, path="/p")
    legacy = seal_legacy_for_tests(plaintext, legacy_secret=LEGACY_SECRET)
    ciphertext_part = envelope.split(":")[3]
    failures: list[CryptoError] = []
    for bad, path in [
        (envelope, "/other"),
        (envelope[:-2] + ("AA" if envelope[-2:] != "AA" else "BB"), "/p"),
        ("v1:k1:" + envelope.split(":", 3)[2] + ":" + ciphertext_part[:5], "/p"),
        (legacy[:-1] + ("0" if legacy[-1] != "0" else "1"), "/p"),
        ("v1:zz:" + envelope.split(":", 2)[2], "/p"),
    ]:
        with pytest.raises(CryptoError) as info:
            aead.open(bad, path=path)
        failures.append(info.value)
    with pytest.raises(CryptoError) as no_legacy:
        Aead(ring12()).open(legacy, path="/p")
    failures.append(no_legacy.value)
    forbidden = [
        *secret_forms(KEY1),
        *secret_forms(KEY2),
        LEGACY_SECRET,
        plaintext.decode(),
        ciphertext_part,
        ciphertext_part[:12],
        envelope.split(":")[2],
        legacy.split(":")[1][:12],
    ]
    for failure in failures:
        text = f"{failure} {failure!r} {failure.metadata} {failure.args}"
        assert_no_leak(text, *forbidden)
        assert failure.__cause__ is None
        assert failure.code == "DECRYPTION_FAILED"


async def test_a_value_read_back_never_shows_the_secret_in_its_repr() -> None:
    """What a read hands out (kept for later reads of the same value) holds the plaintext:
    neither its repr nor its str shows it."""
    _inner, store = make_store(ring12())
    await store.put("/secrets/one", "PLANTED-SECRET-VALUE")
    got = await store.get("/secrets/one")
    assert got is not None and got.value == "PLANTED-SECRET-VALUE"
    for text in (repr(got), str(got), repr([got])):
        assert "PLANTED-SECRET-VALUE" not in text
