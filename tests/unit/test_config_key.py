"""``etcd_config_key`` may not sit where the lease locks live: key rotation leaves those keys out
(they hold no secrets), so a configuration stored there would stay under the old key and fail
every start once that key is dropped."""

from __future__ import annotations

import pytest

from adapters.memory import MemoryKeyValueStore
from entrypoints.overrides import with_stored_overrides
from entrypoints.settings import SettingsError, load_settings


async def test_a_config_key_under_the_locks_is_refused_naming_the_setting() -> None:
    settings = load_settings(env={}, etcd_config_key="/services/locks/config")
    with pytest.raises(SettingsError) as refused:
        await with_stored_overrides(settings, MemoryKeyValueStore())
    assert "etcd_config_key" in str(refused.value) and "/services/locks/" in str(refused.value)


async def test_the_default_config_key_is_read() -> None:
    settings = load_settings(env={})
    assert await with_stored_overrides(settings, MemoryKeyValueStore()) == settings
