"""The business date and the days bulk migrations wait for (CONTRACT.md section 5).

The business date is the latest `occurred_at` date of any message applied so far: business
time never runs backwards, and a schedule is due once that date reaches its day, whatever
message brought it and whichever partition or processor handled it. One aggregate for the
store, so every processor sees the same date and the same days (a conflict is re-decided).
"""

from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from aggregates.ids import aggregate_id

CALENDAR_ID = aggregate_id("calendar", "business-date")


class Calendar(Aggregate):
    class_version = 1

    @staticmethod
    def create_id(**_: Any) -> UUID:
        return CALENDAR_ID

    @event("Started")
    def __init__(self, today: date, message_id: str) -> None:
        self.today = today
        self.due: dict[str, list[str]] = {}  # ISO date -> bulk_ids with something due that day

    @event("Advanced")
    def advance(self, today: date, message_id: str) -> None:
        self.today = today

    def due_by(self, on: date) -> list[str]:
        """Bulks with something due on or before `on`, each once, in the order they fell due."""
        bulks: dict[str, None] = {}
        for day in sorted(d for d in self.due if d <= on.isoformat()):
            bulks.update(dict.fromkeys(self.due[day]))
        return list(bulks)

    def book(self, bulk_id: str, days: list[date], message_id: str) -> None:
        new = sorted({d.isoformat() for d in days if bulk_id not in self.due.get(d.isoformat(), [])})
        if new:
            self._booked(bulk_id=bulk_id, days=new, message_id=message_id)

    @event("Booked")
    def _booked(self, bulk_id: str, days: list[str], message_id: str) -> None:
        for day in days:
            self.due.setdefault(day, []).append(bulk_id)

    def release(self, bulk_id: str, through: date | None, message_id: str) -> None:
        """The bulk has decided everything due through `through` (None: it has nothing left)."""
        days = sorted(d for d, bulks in self.due.items()
                      if bulk_id in bulks and (through is None or d <= through.isoformat()))
        if days:
            self._released(bulk_id=bulk_id, days=days, message_id=message_id)

    @event("Released")
    def _released(self, bulk_id: str, days: list[str], message_id: str) -> None:
        for day in days:
            self.due[day].remove(bulk_id)
            if not self.due[day]:
                del self.due[day]
