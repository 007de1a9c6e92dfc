"""The vendor catalog: which products exist, support usage-based billing, sit in the bundle."""

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from aggregates.ids import aggregate_id


class Catalog(Aggregate):
    """One catalog per store: the bundle rule needs every product at once."""

    @staticmethod
    def create_id() -> UUID:
        return aggregate_id("catalog", "default")

    @event("Created")
    def __init__(self) -> None:
        self.products: dict[str, dict[str, Any]] = {}

    def define_product(
        self, product_id: str, name: str, supports_usage_based: bool, in_usage_bundle: bool, message_id: str
    ) -> None:
        product = {
            "product_id": product_id,
            "name": name,
            "supports_usage_based": supports_usage_based,
            "in_usage_bundle": in_usage_bundle,
        }
        if self.products.get(product_id) != product:
            self._product_defined(product=product, message_id=message_id)

    @event("ProductDefined")
    def _product_defined(self, product: dict[str, Any], message_id: str) -> None:
        self.products[product["product_id"]] = product

    def supports_usage_based(self, product_id: str) -> bool:
        product = self.products.get(product_id)
        return bool(product and product["supports_usage_based"])

    def bundle_products(self) -> list[str]:
        return sorted(p for p, d in self.products.items() if d["in_usage_bundle"])
