"""The two halves of a partial seat transfer, and the upgrade's target, as frozen values.

Stored events keep plain values (`stored()`, with the keys in the order the wire model gives
them, as events recorded before these classes held them); the domain reads attributes. A half
is stamped with the message that carried it: `message_id`, `occurred_at`, `recorded_at`.
"""

from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from typing import Any, Literal


@dataclass(frozen=True, kw_only=True)
class NewSubscription:
    """A new subscription, co-termed with the source. `product_id` and `term_months` are None
    only in a preview that leaves them to default to the source's."""

    kind: Literal["new_subscription"] = "new_subscription"
    new_subscription_id: str
    product_id: str | None
    plan_id: str
    term_months: int | None


@dataclass(frozen=True, kw_only=True)
class ExistingSubscription:
    kind: Literal["existing_subscription"] = "existing_subscription"
    subscription_id: str


Target = NewSubscription | ExistingSubscription


def target_of(stored: dict[str, Any]) -> Target:
    if stored["kind"] == "new_subscription":
        return NewSubscription(**stored)
    return ExistingSubscription(**stored)


class _Half:
    """What both halves share: the stamps of their message, and their order's identity."""

    side: str
    operation_id: str
    order_id: str
    customer_id: str
    seats: int
    message_id: str
    occurred_at: str
    recorded_at: str

    def stored(self) -> dict[str, Any]:
        # A dataclass's __dict__ holds its fields in their order: 1 us, where asdict's deep copy takes 10.
        values = dict(self.__dict__)
        if "target" in values:
            values["target"] = dict(values["target"].__dict__)
        return values

    def same_order(self, other: "Half") -> bool:
        """The same order, whichever message carried it (a re-sent order under a new message id)."""
        unstamped = {"message_id": "", "occurred_at": "", "recorded_at": ""}
        return replace(self, **unstamped) == replace(other, **unstamped)  # type: ignore[type-var]

    @property
    def order_date(self) -> date:
        """The UTC date of the order's `occurred_at`."""
        return datetime.fromisoformat(self.occurred_at).astimezone(timezone.utc).date()

    @property
    def recorded(self) -> datetime:
        return datetime.fromisoformat(self.recorded_at)


@dataclass(frozen=True, kw_only=True)
class Downgrade(_Half):
    side = "downgrade"
    operation_id: str
    order_id: str
    customer_id: str
    subscription_id: str  # the source
    seats: int
    requested_by: str
    message_id: str = ""
    occurred_at: str = ""
    recorded_at: str = ""


@dataclass(frozen=True, kw_only=True)
class Upgrade(_Half):
    side = "upgrade"
    operation_id: str
    order_id: str
    customer_id: str
    seats: int
    requested_by: str
    target: Target
    message_id: str = ""
    occurred_at: str = ""
    recorded_at: str = ""


Half = Downgrade | Upgrade


def half_of(side: str, stored: dict[str, Any]) -> Half:
    """A half from its stored (or wire) values."""
    if side == "downgrade":
        return Downgrade(**stored)
    return Upgrade(**{**stored, "target": target_of(stored["target"])})
