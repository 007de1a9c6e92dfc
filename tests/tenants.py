"""Two partners, two distributors and provider staff in one store, for the tenant tests.

    customer      partner   distributor
    cu-acme-pa    P-ALPHA   -            (direct)
    cu-bolt-pa    P-ALPHA   D-NORTH
    cu-cora-pb    P-BRAVO   -
    cu-dune-pb    P-BRAVO   D-NORTH
    cu-echo-pc    P-CHARLIE D-SOUTH

Each customer holds two subscriptions, an operation, a decided migration; each partner a bulk.
Every id names its customer, so a foreign id in an answer is found by a substring search.
"""

from datetime import date
from typing import Any

from aggregates import bulk_commands, commands
from aggregates.application import Orders
from tests import seed

CUSTOMERS = {"cu-acme-pa": ("P-ALPHA", None), "cu-bolt-pa": ("P-ALPHA", "D-NORTH"),
             "cu-cora-pb": ("P-BRAVO", None), "cu-dune-pb": ("P-BRAVO", "D-NORTH"),
             "cu-echo-pc": ("P-CHARLIE", "D-SOUTH")}
PARTNERS = ("P-ALPHA", "P-BRAVO", "P-CHARLIE")
DISTRIBUTORS = ("D-NORTH", "D-SOUTH")

# Users of the identity provider: name -> claims.
USERS: dict[str, dict[str, Any]] = {
    "pam": {"roles": ["Partner Administrator"], "partner_id": "P-ALPHA"},
    "pete": {"roles": ["Partner Viewer"], "partner_id": "P-ALPHA"},
    "quinn": {"roles": ["Partner Administrator"], "partner_id": "P-BRAVO"},
    "dora": {"roles": ["Distributor Administrator"], "distributor_id": "D-NORTH"},
    "dan": {"roles": ["Distributor Viewer"], "distributor_id": "D-NORTH"},
    "sam": {"roles": ["Account Administrator"]},
    "nobody": {"roles": ["Partner Administrator"]},  # a partner role without its partner_id
    "stranger": {"roles": ["Some Other App Role"]},
}
TENANT_USERS = ("pam", "pete", "quinn", "dora", "dan")


def own_customers(user: str) -> set[str]:
    claims = USERS[user]
    if "partner_id" in claims:
        return {c for c, (p, _) in CUSTOMERS.items() if p == claims["partner_id"]}
    return {c for c, (_, d) in CUSTOMERS.items() if d == claims.get("distributor_id")}


def ids_of(customer: str) -> set[str]:
    """Every id the world gives a customer's things."""
    return {customer, f"{customer}-s1", f"{customer}-s2", f"op-{customer}", f"mig-{customer}"}


def foreign_ids(user: str) -> set[str]:
    """What must never appear in an answer to `user`: the other tenants' customers and their things,
    the partners and distributors they do not belong to, and the other partners' bulks."""
    own = own_customers(user)
    ids = {i for c in CUSTOMERS if c not in own for i in ids_of(c)}
    reach = {p for c in own for p in [CUSTOMERS[c][0]]}
    ids |= {f"bulk-{p}" for p in PARTNERS if p not in reach}
    claims = USERS[user]
    if "partner_id" in claims:
        ids |= {p for p in PARTNERS if p != claims["partner_id"]}
        ids |= {d for d in DISTRIBUTORS if d not in {CUSTOMERS[c][1] for c in own}}
    else:
        ids |= {d for d in DISTRIBUTORS if d != claims["distributor_id"]} | {p for p in PARTNERS if p not in reach}
    return ids


def build(app: Orders) -> None:
    seed.run(app, commands.define_product, "prod-epp", "Elements EPP", True, True)
    seed.run(app, commands.define_product, "prod-e3", "M365 E3", False, False)
    for customer, (partner, distributor) in CUSTOMERS.items():
        seed.run(app, commands.register_customer, customer, partner_id=partner, name=f"Name of {customer}",
                 channel="two_tier" if distributor else "direct", distributor_id=distributor, data_complete=True)
        for n, product in ((1, "prod-epp"), (2, "prod-e3")):
            sub = f"{customer}-s{n}"
            seed.run(app, commands.purchase_subscription, sub, customer, product_id=product, plan_id=f"plan-{product}",
                     billing_model="annual", management="partner_managed", seats=20, term_months=12,
                     start_date=date(2026, 1, 5), end_date=date(2027, 6, 30), subscription_key=f"KEY-{sub}",
                     resource_count=1, day="2026-01-05")
        seed.half(app, "downgrade", f"op-{customer}", customer)
        seed.run(app, commands.request_migration, f"mig-{customer}", customer, ["prod-e3"], "upstream")
    for partner in PARTNERS:
        seed.run(app, bulk_commands.request_bulk, f"bulk-{partner}",
                 {"partner_id": partner, "requested_by": "staff", "product_ids": ["prod-e3"], "customer_ids": None,
                  "all_customers_of_partner": True})
