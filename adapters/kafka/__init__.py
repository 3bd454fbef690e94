"""Kafka adapters (confluent-kafka): the event publisher."""

from adapters.kafka.publisher import KafkaEventPublisher, producer_config

__all__ = ["KafkaEventPublisher", "producer_config"]
