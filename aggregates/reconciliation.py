"""Reconciliation passes over every subscription (CONTRACT.md section 7): where the current
pass is, so a pass stopped by a restart (or a lost leadership) resumes where it stopped
instead of starting over, and what the last finished pass found."""

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from aggregates.ids import aggregate_id

# checked: compared with the vendor's count, once each; agrees / drift (new) / known (already on
# record) / cleared (agree again) / vendor_unknown (404): how each compared; revisited: skipped
# (in flight) or moved while asked, and come back to; in_flight: still in flight at the end.
COUNTS = ("checked", "agrees", "drift", "known", "cleared", "vendor_unknown", "revisited", "moved", "in_flight")


class Reconciliation(Aggregate):
    @staticmethod
    def create_id(name: str = "vendor-seats") -> UUID:
        return aggregate_id("reconciliation", name)

    @event("Created")
    def __init__(self, name: str = "vendor-seats") -> None:
        self.name = name
        self.current: dict[str, Any] | None = None  # the pass under way
        self.last: dict[str, Any] | None = None  # the last pass that finished

    @event("PassStarted")
    def start(self, pass_id: str, started_at: str, by: str) -> None:
        self.current = {"pass_id": pass_id, "started_at": started_at, "by": by, "after": "",
                        "counts": dict.fromkeys(COUNTS, 0), "revisit": []}

    # Every few hundred subscriptions: a resumed pass re-reads at most the ones since.
    @event("PassProgressed")
    def progress(self, pass_id: str, after: str, counts: dict[str, int], revisit: list[str]) -> None:
        assert self.current is not None and self.current["pass_id"] == pass_id
        self.current = {**self.current, "after": after, "counts": counts, "revisit": revisit}

    @event("PassFinished")
    def finish(self, pass_id: str, finished_at: str, counts: dict[str, int], in_flight: list[str]) -> None:
        assert self.current is not None and self.current["pass_id"] == pass_id
        self.last = {**self.current, "finished_at": finished_at, "counts": counts, "in_flight": in_flight}
        self.last.pop("revisit", None)
        self.current = None
