"""The envelope's strict base64url decoder (the fast one every secret read runs) accepts
exactly the canonical output of the encoder, as the slow reference below does."""

from __future__ import annotations

import base64
import binascii
import re

from hypothesis import given
from hypothesis import strategies as st

from adapters.crypto.aead import _b64url, _unb64url

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def reference(text: str) -> bytes | None:
    """Decode, then refuse anything that does not encode back to ``text``."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return data if _b64url(data) == text else None


@given(st.binary(max_size=64))
def test_every_encoding_decodes_back(data: bytes) -> None:
    assert _unb64url(_b64url(data)) == data


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=. \n\u00e9", max_size=30))
def test_any_text_is_judged_as_the_reference_judges_it(text: str) -> None:
    assert _unb64url(text) == reference(text)
