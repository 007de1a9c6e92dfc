"""Where a command came from: the inbound message id and its business clock."""

from dataclasses import dataclass
from datetime import date, datetime, timezone


@dataclass(frozen=True)
class Context:
    """Where a command came from: the inbound message id and its business clock."""

    message_id: str
    occurred_at: datetime  # timezone-aware
    recorded_at: datetime  # processor wall clock; only pairing timeouts look at it

    @property
    def on(self) -> date:
        return self.occurred_at.astimezone(timezone.utc).date()
