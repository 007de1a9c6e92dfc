"""Configuration from the environment (CONTRACT.md section 1). Only the CLI reads it.

`Settings` validates every value; `Settings.from_env()` reads `COTERM_*` variables with
pydantic-settings and turns the first bad one into a one-line `SettingsError` naming it
(the CLI prints it and exits 2). Empty variables count as unset.
"""

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")  # Kafka's legal topic names
BOOTSTRAP = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")


class SettingsError(ValueError):
    """A configuration value is unusable; the message says which and why."""


def store_problem(store: str) -> str | None:
    """What is wrong with a COTERM_STORE value, if anything (checked here at start, and by `open_store`)."""
    if "://" in store and not store.startswith(("postgresql://", "postgres://")):
        return "must be a SQLite file path or a postgresql:// URL"
    return None


def _positive_finite(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a finite number greater than zero")
    return value


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kafka_bootstrap: str | None = None
    store: str = "./var/coterm.sqlite"
    vendor_url: str | None = None
    topic_orders: str = "orders.v1"
    topic_results: str = "orders.results.v1"
    topic_deadletter: str = "orders.deadletter.v1"
    group_id: str = Field("coterm-processor", min_length=1, max_length=255)
    pairing_timeout_s: float = 900.0
    vendor_max_attempts: int = Field(8, ge=1, le=100)
    # The longest `Retry-After` a vendor answer may impose on a call (a longer one is cut to this).
    vendor_retry_after_max_s: float = 60.0
    # Reconciliation with the vendor (CONTRACT.md section 7): vendor reads a second at most, and
    # how often the leading `coterm run` passes over every subscription (0: never; `coterm reconcile` still does).
    reconcile_rate: float = 10.0
    reconcile_every_s: float = Field(86_400.0, ge=0, allow_inf_nan=False)
    staff_file: str | None = None
    # `debug` adds a line per applied message (`message.processed`); `info` logs one per batch.
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    ready_max_lag_s: float = 30.0
    kafka_connect_timeout_s: float = 30.0
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = None
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    # Partitions of the topics coterm creates: at most this many processors of one group consume.
    topic_partitions: int = Field(6, ge=1, le=10_000)
    # Replicas of each topic coterm creates; -1 takes the broker's default.replication.factor.
    topic_replication_factor: int = Field(-1, ge=-1, le=32)
    # Group membership, as Apache Kafka checks it: the broker refuses a session timeout outside
    # its group.min.session.timeout.ms (6 s by default) .. group.max.session.timeout.ms (30 min).
    # A killed processor's partitions move after the session timeout; a restarted one with the
    # same instance id takes them back at once if it returns within it (static membership).
    kafka_session_timeout_ms: int = Field(10_000, ge=1000, le=3_600_000)
    kafka_heartbeat_interval_ms: int = Field(1000, ge=100, le=1_200_000)
    # Also the rebalance timeout: how long a join waits for a member stuck in a batch.
    kafka_max_poll_interval_ms: int = Field(10_000, ge=1000, le=86_400_000)
    # Static membership (KIP-345): on unless `false`; the instance id defaults to
    # `<host name>-<slot>`, the slot the lowest one free on this host (`processor/instance_id.py`).
    kafka_static_membership: bool = True
    kafka_group_instance_id: str | None = Field(None, min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")
    # How far a partition is written, for the pairing timeout (processor/outbox/topic_ends.py):
    # `exact` takes ListOffsets' answer, as Apache Kafka defines it; `lower-bound` reads on from
    # it to the high watermark, for a broker that answers less (the bundled Tansu broker does).
    kafka_list_offsets: Literal["exact", "lower-bound"] = "exact"
    # `coterm serve` sign-in through an OpenID Connect issuer (CONTRACT.md section 6), beside the staff file.
    oidc_issuer: str | None = None
    oidc_audience: str | None = Field(None, min_length=1, max_length=500)
    oidc_client_id: str | None = Field(None, min_length=1, max_length=500)  # the dashboard's public client
    oidc_scopes: str = Field("openid profile", min_length=1, max_length=500)
    oidc_roles_claim: str = Field("roles", min_length=1, max_length=200)  # dotted: realm_access.roles (Keycloak)
    oidc_partner_claim: str = Field("partner_id", min_length=1, max_length=200)
    oidc_distributor_claim: str = Field("distributor_id", min_length=1, max_length=200)

    @field_validator("pairing_timeout_s", "ready_max_lag_s", "kafka_connect_timeout_s", "vendor_retry_after_max_s",
                     "reconcile_rate")
    @classmethod
    def _finite(cls, value: float) -> float:
        return _positive_finite(value)

    @model_validator(mode="after")
    def _heartbeat_below_session(self) -> "Settings":
        if self.kafka_heartbeat_interval_ms * 3 > self.kafka_session_timeout_ms:
            raise ValueError(f"COTERM_KAFKA_HEARTBEAT_INTERVAL_MS={self.kafka_heartbeat_interval_ms} must be at most "
                             f"a third of COTERM_KAFKA_SESSION_TIMEOUT_MS={self.kafka_session_timeout_ms}, or one "
                             "late heartbeat costs the processor its partitions")
        return self

    def group_options(self, static: bool | None = None) -> dict[str, Any]:
        """The consumer's group settings; `static=False` joins as a dynamic member whatever the setting."""
        options: dict[str, Any] = {"session_timeout_ms": self.kafka_session_timeout_ms,
                                   "heartbeat_interval_ms": self.kafka_heartbeat_interval_ms,
                                   "max_poll_interval_ms": self.kafka_max_poll_interval_ms}
        if self.kafka_static_membership if static is None else static:
            options["group_instance_id"] = self.kafka_group_instance_id  # None: a slot is claimed at start
        return options

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str | None) -> str | None:
        if value is not None and not all(BOOTSTRAP.match(part.strip()) for part in value.split(",")):
            raise ValueError("must be host:port[,host:port]")
        return value

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        problem = store_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _issuer_with_audience(self) -> "Settings":
        if self.oidc_issuer and not self.oidc_audience:
            raise ValueError("COTERM_OIDC_ISSUER needs COTERM_OIDC_AUDIENCE: the `aud` a token must carry "
                             "(without it, a token the issuer made for any other application would pass)")
        if self.oidc_audience and not self.oidc_issuer:
            raise ValueError("COTERM_OIDC_AUDIENCE is set without COTERM_OIDC_ISSUER")
        return self

    @field_validator("vendor_url", "oidc_issuer")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError("has a port that is not a number") from None
        return value.rstrip("/")

    @field_validator("topic_orders", "topic_results", "topic_deadletter")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not TOPIC.match(value):
            raise ValueError("must be 1-249 characters of letters, digits, '.', '_' and '-'")
        return value

    @field_validator("kafka_ssl_cafile")
    @classmethod
    def _cafile(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError("is not a readable file")
        return value

    def kafka_options(self) -> dict[str, Any]:
        """Security settings for every kafka-python client (none when unset: plaintext)."""
        options: dict[str, Any] = {}
        if self.kafka_security_protocol:
            options["security_protocol"] = self.kafka_security_protocol
        if self.kafka_sasl_mechanism:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
        if self.kafka_ssl_cafile:
            options["ssl_cafile"] = self.kafka_ssl_cafile
        return options

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        if env is None:  # pydantic-settings reads the process environment
            raw = {k: v.strip() for k, v in _FromEnv().model_dump().items() if v is not None and v.strip()}
        else:
            raw = {name: env[f"COTERM_{name.upper()}"].strip() for name in cls.model_fields
                   if env.get(f"COTERM_{name.upper()}", "").strip()}
        try:
            settings = cls(**raw)
        except ValidationError as error:
            first = error.errors()[0]
            if not first["loc"]:  # a rule across fields: its message names them
                raise SettingsError(first["msg"].removeprefix("Value error, ")) from None
            field = str(first["loc"][0])
            shown = "(hidden)" if "password" in field else repr(raw.get(field, ""))
            message = first["msg"].removeprefix("Value error, ")
            raise SettingsError(f"COTERM_{field.upper()}={shown}: {_plain(message)}") from None
        problem = settings.sasl_problem()
        if problem:
            raise SettingsError(problem)
        return settings

    def sasl_problem(self) -> str | None:
        """SASL settings that cannot work, said before a client tries (it would only report that no
        broker answered)."""
        protocol, mechanism = self.kafka_security_protocol, self.kafka_sasl_mechanism
        sasl = protocol in ("SASL_PLAINTEXT", "SASL_SSL")
        if sasl and not mechanism:
            return (f"COTERM_KAFKA_SECURITY_PROTOCOL={protocol} needs COTERM_KAFKA_SASL_MECHANISM "
                    "(PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
        if mechanism and not sasl:
            return (f"COTERM_KAFKA_SASL_MECHANISM={mechanism} needs COTERM_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT "
                    f"or SASL_SSL (it is {protocol or 'unset'})")
        missing = [name for name, value in (("COTERM_KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                                            ("COTERM_KAFKA_SASL_PASSWORD", self.kafka_sasl_password)) if not value]
        if mechanism and missing:
            return f"COTERM_KAFKA_SASL_MECHANISM={mechanism} needs {' and '.join(missing)}"
        return None


class _EnvReader(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COTERM_", env_ignore_empty=True, extra="ignore")


# Every field read as text: `Settings` then validates, so an error can name the variable and its value.
_FromEnv = create_model("_FromEnv", __base__=_EnvReader,
                        **{name: (str | None, None) for name in Settings.model_fields})  # type: ignore[call-overload]


def _plain(message: str) -> str:
    """pydantic's wording, shortened for one line: 'Input should be a valid number, ...' -> 'is not a number'."""
    if message.startswith("Input should be a valid number") or message.startswith("Input should be a finite"):
        return "is not a number"
    if message.startswith("Input should be a valid integer"):
        return "is not a whole number"
    return message[0].lower() + message[1:] if message else message
