"""Configuration from the environment (CONTRACT.md section 1). Only the CLI reads it."""

import os
from collections.abc import Mapping
from dataclasses import dataclass


class SettingsError(ValueError):
    """A configuration value is unusable; the message says which and why."""


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str | None = None
    store: str = "./var/coterm.sqlite"
    vendor_url: str | None = None
    topic_orders: str = "orders.v1"
    topic_results: str = "orders.results.v1"
    topic_deadletter: str = "orders.deadletter.v1"
    group_id: str = "coterm-processor"
    pairing_timeout_s: float = 900.0
    vendor_max_attempts: int = 8
    staff_file: str | None = None
    ready_max_lag_s: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        defaults = cls()

        def text(name: str, default: str | None) -> str | None:
            value = env.get(name, "").strip()
            return value or default

        return cls(
            kafka_bootstrap=text("COTERM_KAFKA_BOOTSTRAP", None),
            store=text("COTERM_STORE", defaults.store) or defaults.store,
            vendor_url=(text("COTERM_VENDOR_URL", None) or "").rstrip("/") or None,
            topic_orders=text("COTERM_TOPIC_ORDERS", defaults.topic_orders) or defaults.topic_orders,
            topic_results=text("COTERM_TOPIC_RESULTS", defaults.topic_results) or defaults.topic_results,
            topic_deadletter=text("COTERM_TOPIC_DEADLETTER", defaults.topic_deadletter) or defaults.topic_deadletter,
            group_id=text("COTERM_GROUP_ID", defaults.group_id) or defaults.group_id,
            pairing_timeout_s=_number(env, "COTERM_PAIRING_TIMEOUT_S", defaults.pairing_timeout_s, float),
            vendor_max_attempts=int(_number(env, "COTERM_VENDOR_MAX_ATTEMPTS", defaults.vendor_max_attempts, int)),
            staff_file=text("COTERM_STAFF_FILE", None),
            ready_max_lag_s=_number(env, "COTERM_READY_MAX_LAG_S", defaults.ready_max_lag_s, float),
        )


def _number(env: Mapping[str, str], name: str, default: float, kind: type) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be greater than zero")
    return value
