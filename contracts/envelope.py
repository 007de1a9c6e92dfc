"""The envelope every coterm message travels in (CONTRACT.md section 2)."""

from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    field_validator,
)


class Envelope(BaseModel):
    """Inbound envelope.

    `type` and `schema_version` are only checked for shape here: an unknown type or
    version is a later, more specific rejection, and the message still counts as seen.
    Unknown extra fields are ignored (tolerant reader), so upstream can add fields.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    message_id: UUID
    type: StrictStr = Field(min_length=1)  # any other text is UNKNOWN_TYPE (CONTRACT.md 2), not malformed
    schema_version: StrictInt
    occurred_at: AwareDatetime
    source: StrictStr = Field(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")
    payload: Any

    @field_validator("occurred_at")
    @classmethod
    def _has_a_utc_date(cls, value: datetime) -> datetime:
        # Rules use the UTC date: 9999-12-31T23:00:00-14:00 has none (year 10000).
        try:
            value.astimezone(timezone.utc)
        except OverflowError:
            raise ValueError("has no date in UTC (out of range)") from None
        return value


class ResultEnvelope(BaseModel):
    """Outbound envelope on the results topic; `causation_id` names the inbound cause."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: UUID
    type: str
    schema_version: int = 1
    occurred_at: AwareDatetime
    source: str = "coterm"
    causation_id: UUID
    payload: dict[str, Any]
