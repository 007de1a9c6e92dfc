"""The orders topic as `coterm serve` publishes to it: orders a person places from the dashboard or API."""

import threading
import time

from kafka import KafkaProducer
from kafka.errors import KafkaError

from processor.settings import Settings
from projections.submit import NoBroker, OrdersOut, OrdersUnavailable

RECHECK_S = 5.0  # a broker that did not answer is asked again after this long, not on every page refresh


class KafkaOrders:
    """A producer made on first use and kept; after a failure, made again on the next use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: KafkaProducer | None = None
        self._why_not: str | None = None
        self._checked_at = 0.0
        self._lock = threading.Lock()

    def _connect(self) -> KafkaProducer | None:
        with self._lock:
            if self._producer is not None:
                return self._producer
            if self._why_not is not None and time.monotonic() - self._checked_at < RECHECK_S:
                return None
            self._checked_at = time.monotonic()
            try:
                # Short waits: a person is waiting for the answer (503 with the reason beats a spinner).
                self._producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all",
                                               bootstrap_timeout_ms=3000, max_block_ms=5000,
                                               request_timeout_ms=5000, **self.settings.kafka_options())
                self._why_not = None
            except (KafkaError, ValueError, OSError) as error:
                self._why_not = (f"no Kafka broker answered at COTERM_KAFKA_BOOTSTRAP={self.settings.kafka_bootstrap} "
                                 f"({type(error).__name__}): orders cannot be placed now")
            return self._producer

    def unavailable(self) -> str | None:
        return None if self._connect() is not None else self._why_not

    def publish(self, messages: list[tuple[bytes | None, bytes]]) -> None:
        producer = self._connect()
        if producer is None:
            raise OrdersUnavailable(self._why_not or "the orders topic cannot be reached")
        try:
            futures = [producer.send(self.settings.topic_orders, key=key, value=value) for key, value in messages]
            for future in futures:
                future.get(timeout=10)
        except KafkaError as error:
            with self._lock:  # the next use makes a new producer (and says why until then)
                self._producer, self._why_not, self._checked_at = None, f"the orders topic did not take the order ({type(error).__name__})", time.monotonic()
            try:
                producer.close(timeout=1)
            except Exception:  # noqa: BLE001 - closing a broken producer must not hide the 503
                pass
            raise OrdersUnavailable(self._why_not) from None

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None


def orders_out(settings: Settings) -> OrdersOut:
    return KafkaOrders(settings) if settings.kafka_bootstrap else NoBroker()
