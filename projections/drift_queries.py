"""Seat drift on the read side: drifted subscriptions listed, filtered and counted, and one
subscription's drift with its history from the store (CONTRACT.md section 7)."""

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aggregates.reconciliation import Reconciliation
from aggregates.subscription import Subscription
from projections.timeline import event_record

DRIFT_STATUSES = ("open", "explained", "resolved", "cleared")
STANDING = ("open", "explained")  # drift not resolved: the counts still differ as far as coterm knows
THROTTLING_WINDOW_S = 60.0  # a 429 this recent: the vendor throttles coterm now
DRIFT_EVENTS = (Subscription.DriftFound, Subscription.DriftCleared, Subscription.DriftExplained,
                Subscription.DriftResolved)


class BadDriftQuery(ValueError):
    pass


def _cursor(found_at: str, row_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(["drift", found_at, row_id]).encode()).decode()


def _after(cursor: str) -> tuple[str, str]:
    try:
        kind, found_at, row_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if kind != "drift" or not isinstance(found_at, str) or not isinstance(row_id, str):
            raise ValueError
        return found_at, row_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise BadDriftQuery(f"cursor {cursor!r} is not one this API returned") from None


class Drift:
    """Mixed into `Queries` (its `tables`, `_t` and `app`)."""

    tables: Any
    app: Any
    _t: Callable[[str], str]  # `TenantScope._t`: a read model's table name

    def drift_counts(self) -> dict[str, int]:
        found = {r["drift_status"]: r["n"] for r in self.tables.fetch(
            f"SELECT drift_status, COUNT(*) AS n FROM {self._t('subscriptions')} WHERE drift_status IS NOT NULL "
            "GROUP BY drift_status")}
        return {status: int(found.get(status, 0)) for status in DRIFT_STATUSES}

    def list_drift(self, status: str | None = None, customer: str | None = None, limit: int = 50,
                   cursor: str | None = None) -> dict[str, Any]:
        """Newest drift first. `status`: one of DRIFT_STATUSES, or None for the standing ones
        (open and explained)."""
        if status is not None and status not in DRIFT_STATUSES:
            raise BadDriftQuery(f"status={status!r} is not one of {', '.join(DRIFT_STATUSES)}")
        if not 1 <= limit <= 500:
            raise BadDriftQuery(f"limit={limit} must be between 1 and 500")
        wanted = [status] if status else list(STANDING)
        where = [f"drift_status IN ({', '.join('?' for _ in wanted)})"]
        params: list[Any] = list(wanted)
        if customer:
            where.append("customer_id = ?")
            params.append(customer)
        if cursor:
            where.append("(drift_found_at < ? OR (drift_found_at = ? AND id < ?))")
            found_at, row_id = _after(cursor)
            params += [found_at, found_at, row_id]
        rows = self.tables.fetch(f"SELECT id, drift_found_at, doc FROM {self._t('subscriptions')} WHERE "
                                 f"{' AND '.join(where)} ORDER BY drift_found_at DESC, id DESC LIMIT ?",
                                 [*params, limit + 1])
        items = [_item(json.loads(r["doc"])) for r in rows[:limit]]
        last = rows[limit - 1] if len(rows) > limit else None
        return {"items": items, "counts": self.drift_counts(),
                "next_cursor": _cursor(last["drift_found_at"], last["id"]) if last else None}

    def drift_of(self, subscription_id: str) -> dict[str, Any] | None:
        """One subscription's drift and every drift event it has had (who, when, both counts)."""
        rows = self.tables.fetch(f"SELECT doc FROM {self._t('subscriptions')} WHERE subscription_id = ?",
                                 [subscription_id])
        if not rows:
            return None
        events = self.app.events.get(Subscription.create_id(subscription_id))
        return {**_item(json.loads(rows[0]["doc"])),
                "history": [event_record(e) for e in events if isinstance(e, DRIFT_EVENTS)]}

    def vendor_status(self, now: datetime) -> dict[str, Any]:
        """The leading outbox's limiter as it last wrote it (`processor/outbox/vendor_status.py`)."""
        row = self.tables.status("vendor")
        if row is None:
            return {"known": False, "throttling": False}
        last = row.get("last_throttled_at")
        recent = last is not None and (now - datetime.fromisoformat(last)).total_seconds() < THROTTLING_WINDOW_S
        age = (now - datetime.fromisoformat(row["updated_at"])).total_seconds()
        return {**row, "known": True, "throttling": recent or row["concurrency_limit"] < row["concurrency_max"],
                "age_s": round(max(0.0, age), 1)}

    def reconciliation(self) -> dict[str, Any]:
        """The pass under way (where it is) and the last one finished."""
        passes = self.app.unit_of_work().get(Reconciliation, Reconciliation.create_id())  # brought current
        if passes is None:
            return {"current": None, "last": None}
        return {"current": passes.current, "last": passes.last}


def _item(doc: dict[str, Any]) -> dict[str, Any]:
    return {"subscription_id": doc["subscription_id"], "customer_id": doc["customer_id"],
            "product_id": doc["product_id"], "plan_id": doc["plan_id"], "seats": doc["seats"],
            "in_flight": doc.get("in_flight", []), "drift": doc.get("drift")}
