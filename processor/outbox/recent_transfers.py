"""Transfers rebuilt from the events the outbox's follower has already read and decoded.

The follower reads every Transfer event (to publish results and track calls), and each round
then loaded the transfers whose calls it sends from the store: the same `Opened` and
`VendorCallRequested` read and decoded a second time, 2 of the 7 events of every transfer. Here
the follower keeps the events of recently opened transfers, and when one's vendor call is
requested, with every earlier event of it read here, it is rebuilt from them (as the store's
load would: transfers have no snapshots) and goes into the aggregate cache, where the round
finds it. Only the most recent `KEEP` open transfers are kept: halves that wait long for their
partner (a hundred thousand of them in `make bench`) are loaded from the store as before.
"""

from collections import OrderedDict
from typing import Any
from uuid import UUID

from aggregates.application import _project
from aggregates.transfer import Transfer

KEEP = 2000


class RecentTransfers:
    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self.events: OrderedDict[UUID, list[Any]] = OrderedDict()

    def read(self, event: Any) -> Transfer | None:
        """Take one event read from the log; the transfer, rebuilt, when this event requested its
        vendor call and every earlier event of it was read here."""
        if isinstance(event, Transfer.Opened):
            if event.call is not None:  # opened with its call requested: nothing earlier to wait for
                return _project(None, [event])
            if event.originator_version == 1:
                self.events[event.originator_id] = [event]
                if len(self.events) > self.keep:
                    self.events.popitem(last=False)
            return None
        kept = self.events.get(event.originator_id)
        if kept is None:
            return None
        if kept[-1].originator_version != event.originator_version - 1:  # one not read here: load it
            del self.events[event.originator_id]
            return None
        kept.append(event)
        if isinstance(event, Transfer.VendorCallRequested):
            del self.events[event.originator_id]
            return _project(None, kept)
        return None
