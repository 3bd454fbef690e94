"""librdkafka errors as this adapter reads them: by name and code, never by their text (which
may carry addresses or configuration)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException

#: errors about one message that sending it again cannot cure (it is set aside, not retried)
PERMANENT = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_MSG,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
    }
)

#: "another record of the batch was invalid" (KIP-467): this record is fine on its own
INVALID_DIFFERENT_RECORD = getattr(KafkaError, "_INVALID_DIFFERENT_RECORD", -138)


def kafka_error(obj: Any) -> Any:
    if isinstance(obj, KafkaException) and obj.args:
        return obj.args[0]
    return obj


def error_name(obj: Any) -> str:
    """The librdkafka error name (``_MSG_TIMED_OUT``, ``UNKNOWN_PRODUCER_ID``): never its text,
    which may carry addresses or configuration."""
    err = kafka_error(obj)
    name = getattr(err, "name", None)
    if callable(name):
        try:
            return str(name())
        except Exception:  # noqa: S110 - a name is best effort
            pass
    return type(err).__name__


def error_code(obj: Any) -> int | None:
    err = kafka_error(obj)
    code = getattr(err, "code", None)
    return int(code()) if callable(code) else None


def is_permanent(obj: Any) -> bool:
    """An error about one message that sending it again cannot cure (not a fatal producer error)."""
    return error_code(obj) in PERMANENT and not is_fatal(obj)


def is_fatal(obj: Any) -> bool:
    fatal = getattr(kafka_error(obj), "fatal", None)
    return bool(fatal()) if callable(fatal) else False


def beside_invalid(obj: Any) -> bool:
    """Refused only because another record of its batch was invalid: send it again alone."""
    return obj is not None and error_code(obj) == INVALID_DIFFERENT_RECORD
