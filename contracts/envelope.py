"""The envelope every coterm message travels in (CONTRACT.md section 2)."""

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, StrictStr
from uuid import UUID


class Envelope(BaseModel):
    """Inbound envelope.

    `type` and `schema_version` are only checked for shape here: an unknown type or
    version is a later, more specific rejection, and the message still counts as seen.
    Unknown extra fields are ignored (tolerant reader), so upstream can add fields.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    message_id: UUID
    type: StrictStr = Field(min_length=1)
    schema_version: StrictInt
    occurred_at: AwareDatetime
    source: StrictStr
    payload: Any


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
