"""The run-time override policy: which settings another process may change while the service
runs, through a JSON object stored at ``settings.etcd_config_key`` in the secret store.

Picked up by every reload (``POST /updateAppConfig``, and with etcd the configuration watch).
Connection and adapter settings are not among them: changing those needs a restart.
"""

from __future__ import annotations

import json

from adapters.factories.sections import LOCKS_PREFIX
from connector_core.ports.kv_store import KeyValueStore
from entrypoints.settings import Settings, SettingsError, apply_overrides

RELOADABLE = frozenset(
    {
        "oauth_allowed_origins",
        "oauth_redirect_path",
        "oauth_post_auth_path",
        "oauth_state_ttl_seconds",
        "oauth_legacy_redirect_uri",
        "refresh_margin_seconds",
        "refresh_batch_size",
        "refresh_concurrency",
        "custom_providers",
        "public_url",
    }
)


async def with_stored_overrides(settings: Settings, store: KeyValueStore) -> Settings:
    """``settings`` with the stored overrides applied; :class:`SettingsError` names a stored
    setting that may not change at run time or has a bad value."""
    if settings.etcd_config_key.startswith(LOCKS_PREFIX):
        # those keys hold no secrets, so key rotation leaves them out: a configuration there
        # would stay under the old key and fail every start once that key is dropped
        raise SettingsError.for_field("etcd_config_key", f"must not be under {LOCKS_PREFIX}, where the locks live")
    found = await store.get(settings.etcd_config_key)
    if found is None:
        return settings
    try:
        data = json.loads(found.value)
    except json.JSONDecodeError:
        raise SettingsError.for_field("etcd_config_key", "stored configuration is not JSON") from None
    if not isinstance(data, dict):
        raise SettingsError.for_field("etcd_config_key", "stored configuration is not an object")
    fixed = sorted(set(data) - RELOADABLE)
    if fixed:
        raise SettingsError.for_field(fixed[0], "cannot be changed at run time")
    return apply_overrides(settings, data)
