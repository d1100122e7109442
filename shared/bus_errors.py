"""The bus's fault classes: what the consumer loop dead-letters and what it retries."""

from __future__ import annotations

from kafka.errors import KafkaError
from sqlalchemy.exc import InterfaceError, OperationalError


class PoisonMessage(Exception):
    """A record that can never be processed (undecodable, invalid): dead-letter it at once."""


class TransientError(Exception):
    """A fault that may pass (broker or database briefly unavailable): retry with backoff."""


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    OperationalError,
    InterfaceError,
    TimeoutError,
    ConnectionError,
    KafkaError,
)

#: what a broker that went away raises in a client (the producer, the admin client)
BROKER_ERRORS: tuple[type[BaseException], ...] = (KafkaError, ConnectionError, TimeoutError)
