"""The single vendor call of a paired transfer (CONTRACT.md section 4)."""

from datetime import date
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt


class VendorModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceChange(VendorModel):
    subscription_id: str
    seats_before: PositiveInt
    seats_after: PositiveInt


class NewTargetChange(VendorModel):
    kind: Literal["new_subscription"]
    subscription_id: str
    plan_id: str
    seats_before: NonNegativeInt
    seats_after: PositiveInt
    start_date: date
    renewal_date: date
    billing_start_date: date


class ExistingTargetChange(VendorModel):
    kind: Literal["existing_subscription"]
    subscription_id: str
    seats_before: PositiveInt
    seats_after: PositiveInt


class VendorTransferRequest(VendorModel):
    operation_id: str
    customer_id: str
    source: SourceChange
    target: Annotated[Union[NewTargetChange, ExistingTargetChange], Field(discriminator="kind")]
    seats: PositiveInt


class VendorTransferResponse(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    vendor_reference: str = Field(min_length=1)
