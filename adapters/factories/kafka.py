"""The Kafka backend: the event publisher of the outbox relay."""

from __future__ import annotations

from adapters.factories.sections import KafkaSettings
from adapters.health import require
from adapters.kafka import KafkaEventPublisher
from connector_core.errors import ValidationError


async def open_kafka(settings: KafkaSettings) -> KafkaEventPublisher:
    """A publisher whose broker answers and whose topics exist."""
    try:
        publisher = KafkaEventPublisher(
            settings.bootstrap,
            client_config=dict(settings.client_config),
            profile=settings.profile,
            replication_factor=settings.replication_factor,
            min_insync_replicas=settings.min_insync_replicas,
        )
    except ValueError as exc:  # the message names a key, never a value
        raise ValidationError.for_field("client_config", str(exc)) from None
    try:
        await require(publisher.check, f"Kafka at {settings.bootstrap}", within=settings.start_up_timeout_seconds)
        await publisher.ensure_topics()
    except BaseException:
        await publisher.aclose()
        raise
    return publisher
