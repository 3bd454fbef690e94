"""etcd adapters (``aetcd``): key-value store, lease lock and configuration watcher.

Share one client between them::

    store = connect_etcd(("10.0.0.1", 2379), ("10.0.0.2", 2379), ("10.0.0.3", 2379), user=..., password=...)
    lock = EtcdLeaseLock(store.members, SystemClock())
    watcher = EtcdConfigWatcher(store.members, "/services/connectors/", reload)
"""

from adapters.etcd.config_watch import EtcdConfigWatcher
from adapters.etcd.kv_store import EtcdKeyValueStore, connect_etcd
from adapters.etcd.lock import EtcdLeaseLock
from adapters.etcd.members import EtcdMembers, TlsMaterial

__all__ = ["EtcdConfigWatcher", "EtcdKeyValueStore", "EtcdLeaseLock", "EtcdMembers", "TlsMaterial", "connect_etcd"]
