"""etcd adapters (``aetcd``): key-value store, lease lock and configuration watcher.

Share one client between them::

    store = connect_etcd("127.0.0.1", 2379, user=..., password=...)
    lock = EtcdLeaseLock(store.client, SystemClock())
    watcher = EtcdConfigWatcher(store.client, "/services/connectors/", reload)
"""

from adapters.etcd.config_watch import EtcdConfigWatcher
from adapters.etcd.kv_store import EtcdKeyValueStore, connect_etcd
from adapters.etcd.lock import EtcdLeaseLock

__all__ = ["EtcdConfigWatcher", "EtcdKeyValueStore", "EtcdLeaseLock", "connect_etcd"]
