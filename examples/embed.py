"""Embedding the connector manager in your own service: in-memory adapters, no servers.

Run: .venv/bin/python examples/embed.py
"""

from __future__ import annotations

import asyncio

from adapters.crypto import Aead, EncryptedKeyValueStore, Keyring
from adapters.memory import MemoryKeyValueStore, MemoryOutboxReader, MemoryStorage
from adapters.system import SecureIds, SystemClock, SystemRandom
from connector_core import ConfigUpdate, ConnectorService, NotConfigured, ServiceContext, load_default_catalog


async def main() -> None:
    storage = MemoryStorage()  # or adapters.sqlite / adapters.mongo for durable storage
    ctx = ServiceContext(
        catalog=load_default_catalog(),
        uow=storage.unit_of_work,
        secrets=EncryptedKeyValueStore(MemoryKeyValueStore(), Aead(Keyring.generate())),
        clock=SystemClock(),
        ids=SecureIds(),
        random=SystemRandom(),
    )
    connectors = ConnectorService(ctx)

    try:
        await connectors.toggle("acme", "alice", "jira")
    except NotConfigured as exc:
        print("refused:", exc.message)

    await connectors.update_configuration(
        "acme",
        "alice",
        "jira",
        ConfigUpdate(
            base_url="https://acme.atlassian.net",
            auth={"authType": "API_TOKEN", "email": "ops@acme.example", "apiToken": "example-token"},
            sync={},
            filters={},
        ),
    )
    view = await connectors.toggle("acme", "alice", "jira")
    print("jira enabled:", view.connector.is_enabled, "apps:", list(view.connector.enabled_apps))

    for message in await MemoryOutboxReader(storage).pending(100):
        print("event:", message.event.event_type, message.event.partition_key)


if __name__ == "__main__":
    asyncio.run(main())
