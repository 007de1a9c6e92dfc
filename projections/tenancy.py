"""The tenant's reach, in SQL: the conditions every read of `Queries` that takes a `tenant`
confines its rows with (CONTRACT.md section 6). Provider staff (`tenant` None) reach every row.

A partner's customers are those whose read-model row names its `partner_id`; a distributor's,
those that name its `distributor_id` (as `customer.registered`, then `customer.updated`, set
it). Operations, subscriptions and migrations follow their customer; bulks their partner, and a
tenant reads only its own customers' rows of a bulk.
"""

from typing import Any

from aggregates.bulk import count_outcomes
from projections.identity import Tenant
from projections.recorders import PostgresReadModels, SQLiteReadModels


class TenantScope:
    tables: SQLiteReadModels | PostgresReadModels

    def _t(self, name: str) -> str:
        return self.tables.table(name)

    # -- the tenant's reach, in SQL: every read below that takes a `tenant` confines its rows with it
    def _tenant_column(self, tenant: Tenant) -> str:
        return "partner_id" if tenant.kind == "partner" else "distributor_id"

    def _of_tenant(self, tenant: Tenant | None, where: list[str], params: list[Any], column: str = "customer_id") -> None:
        """Rows whose `column` names one of the tenant's customers (provider staff: every row)."""
        if tenant is not None:
            where.append(f"{column} IN (SELECT customer_id FROM {self._t('customers')} "
                         f"WHERE {self._tenant_column(tenant)} = ?)")
            params.append(tenant.id)

    def visible_customer(self, customer_id: str, tenant: Tenant | None) -> bool:
        where, params = ["customer_id = ?"], [customer_id]
        self._of_tenant(tenant, where, params)
        return bool(self.tables.fetch(f"SELECT 1 AS x FROM {self._t('customers')} WHERE {' AND '.join(where)}", params))

    def visible_subscription(self, subscription_id: str, tenant: Tenant | None) -> bool:
        """Provider staff see every id (known or not: a what-if answers for an unknown one too)."""
        if tenant is None:
            return True
        where, params = ["subscription_id = ?"], [subscription_id]
        self._of_tenant(tenant, where, params)
        return bool(self.tables.fetch(f"SELECT 1 AS x FROM {self._t('subscriptions')} WHERE {' AND '.join(where)}", params))

    def tenant_customers(self, tenant: Tenant, among: list[str] | None = None, partner: str | None = None) -> list[str]:
        """The tenant's customer ids (of one partner, or among some ids), sorted."""
        where, params = [f"{self._tenant_column(tenant)} = ?"], [tenant.id]
        if partner is not None:
            where.append("partner_id = ?")
            params.append(partner)
        rows = self.tables.fetch(f"SELECT customer_id FROM {self._t('customers')} WHERE {' AND '.join(where)} "
                                 "ORDER BY customer_id", params)
        ids = [r["customer_id"] for r in rows]
        if among is None:
            return ids
        wanted = set(among)  # once: a bulk names up to 50,000 customers
        return [c for c in ids if c in wanted]

    def _bulks_of(self, tenant: Tenant | None, where: list[str], params: list[Any]) -> None:
        """A partner's bulks; a distributor's: its resellers' (`_confine_bulk` keeps its customers)."""
        if tenant is not None and tenant.kind == "partner":
            where.append("partner_id = ?")
            params.append(tenant.id)
        elif tenant is not None:
            where.append(f"partner_id IN (SELECT partner_id FROM {self._t('customers')} WHERE distributor_id = ?)")
            params.append(tenant.id)

    def _confine_bulk(self, doc: dict[str, Any], tenant: Tenant | None) -> dict[str, Any] | None:
        """The bulk as the tenant may read it: its own customers' rows only (a bulk placed by provider
        staff may name others), counted again; None when none of them is the tenant's."""
        if tenant is None:
            return doc
        named = list(dict.fromkeys([*(doc.get("customer_order") or []), *doc["customers"], *(doc.get("customer_ids") or [])]))
        mine = set(self.tenant_customers(tenant, among=named))
        if tenant.kind == "distributor" and not mine:
            return None
        doc["customers"] = {c: o for c, o in doc["customers"].items() if c in mine}
        doc["customer_order"] = [c for c in doc.get("customer_order") or [] if c in mine]
        if "customer_ids" in doc and doc["customer_ids"] is not None:
            doc["customer_ids"] = [c for c in doc["customer_ids"] if c in mine]
        doc["counts"] = count_outcomes(doc["customers"])
        return doc
