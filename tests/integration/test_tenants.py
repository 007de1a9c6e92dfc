"""The hostile tenant test: partners' and distributors' users, signed in through a real OpenID
Connect provider over HTTP, walk every `/api` route of the OpenAPI document with the other
tenants' ids and parameters. Nothing of another tenant is in any answer, their ids answer 404
exactly as an unknown id, lists and CSVs hold only the caller's rows, no write reaches the broker
(CONTRACT.md section 6). A route this test does not know how to call fails it: a new route is
covered by default."""

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from aggregates.submission import Submission
from processor.kafka_io import read_topic
from processor.orders_out import KafkaOrders
from projections.oidc import Issuer, OidcConfig
from projections.staff import Staff
from tests import tenants
from tests.harness import Scenario
from tests.http_server import call, serving
from tests.oidc_provider import AUDIENCE, Provider, running

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)
UNKNOWN = "zz-no-such-id"
DEADLETTER = "0" * 32


@pytest.fixture
def provider() -> Iterator[Provider]:
    with running(tenants.USERS) as p:
        yield p


@pytest.fixture
def world(scenario: Scenario) -> Scenario:
    app = scenario.open_store()
    tenants.build(app)
    app.close()
    return scenario


@pytest.fixture
def api(world: Scenario, provider: Provider) -> Iterator[str]:
    app = world.open_store()
    orders = KafkaOrders(world.settings)
    issuer = Issuer(OidcConfig(issuer=provider.issuer, audience=AUDIENCE, client_id="coterm-dashboard"))
    with serving(app, Staff(None), orders=orders, clock=lambda: NOW, issuer=issuer) as url:
        yield url
    orders.close()
    app.close()


def placed(s: Scenario) -> list[dict[str, Any]]:
    return [m for m in (json.loads(r.value) for r in read_topic(s.bootstrap, s.settings.topic_orders) if r.value)
            if m.get("source") == "coterm-api"]


def routes(api: str) -> list[tuple[str, str, dict[str, Any]]]:
    _, document = call(api + "/openapi.json")
    return [(method.upper(), path, operation) for path, item in document["paths"].items() if path.startswith("/api/")
            for method, operation in item.items()]


# What each parameter of a route holds, by name: the foreign ids to try in it.
def _values(name: str, user: str) -> list[str]:
    foreign = sorted(tenants.foreign_ids(user))
    kinds = {
        "customer_id": [i for i in foreign if i.startswith("cu-") and i in tenants.CUSTOMERS],
        "customer": [i for i in foreign if i in tenants.CUSTOMERS],
        "q": [i for i in foreign if i in tenants.CUSTOMERS] + ["cu-"],
        "operation_id": [i for i in foreign if i.startswith("op-")],
        "request_id": [i for i in foreign if i.startswith("mig-")],
        "bulk_id": [i for i in foreign if i.startswith("bulk-")],
        "source": [i for i in foreign if i.endswith("-s1")],
        "target_subscription": [i for i in foreign if i.endswith("-s2")],
        "partner": [i for i in foreign if i.startswith("P-")],
        "deadletter_id": [DEADLETTER],
        "subscription_id": [i for i in foreign if i.endswith("-s1")],
    }
    if name not in kinds:
        raise AssertionError(f"the hostile tenant test does not know the parameter {name!r}: teach it (tests/integration/test_tenants.py)")
    return kinds[name]


def _own(name: str, user: str) -> str:
    """A value of the caller's own for a required parameter, while another one is tried foreign."""
    mine = sorted(tenants.own_customers(user))[0]
    return {"customer": mine, "customer_id": mine, "source": f"{mine}-s1", "target_subscription": f"{mine}-s2",
            "partner": tenants.CUSTOMERS[mine][0]}[name]


FIXED_QUERY = {"seats": "1", "product": "prod-e3", "format": "csv", "limit": "500", "target_plan": "plan-x",
               "on": "2026-11-02", "status": None, "reason": None, "since": None, "until": None, "cursor": None,
               "term_months": None}


def _bodies(path: str, foreign: set[str], own_partner: str | None) -> list[dict[str, Any]]:
    customers = sorted(i for i in foreign if i in tenants.CUSTOMERS)
    if path == "/api/migrations":
        return [{"customer_id": c, "product_ids": ["prod-e3"]} for c in customers]
    if path == "/api/bulk":
        partners = sorted(i for i in foreign if i.startswith("P-"))
        return ([{"partner_id": p, "product_ids": ["prod-e3"], "all_customers_of_partner": True} for p in partners]
                + [{"partner_id": tenants.CUSTOMERS[c][0], "product_ids": ["prod-e3"], "customer_ids": [c]} for c in customers]
                + ([{"partner_id": own_partner, "product_ids": ["prod-e3"], "customer_ids": customers}] if own_partner else []))
    if path == "/api/transfers":
        return [{"subscription_id": f"{c}-s1", "seats": 1, "target": {"kind": "new_subscription", "plan_id": "plan-x"}}
                for c in customers]
    if path.endswith(("/cancel", "/retry", "/drift/{subscription_id}/resolve", "/drift/{subscription_id}/explain")):
        return [{"reason": "hostile"}]
    if path.endswith("/redrive"):
        return [{"why": "hostile"}]
    raise AssertionError(f"the hostile tenant test has no body for POST {path}: teach it")


def _fill(path: str, name: str, value: str) -> str:
    return path.replace("{" + name + "}", urllib.parse.quote(value, safe=""))


def _leaks(body: Any, foreign: set[str]) -> list[str]:
    text = body if isinstance(body, str) else json.dumps(body)
    return sorted(i for i in foreign if i in text)


@pytest.mark.integration
def test_every_route_keeps_each_tenant_to_its_own(api: str, world: Scenario, provider: Provider) -> None:
    walked: set[str] = set()
    for user in tenants.TENANT_USERS:
        token = provider.mint(user)
        foreign = tenants.foreign_ids(user)
        own_partner = tenants.USERS[user].get("partner_id")
        for method, path, operation in routes(api):
            walked.add(f"{method} {path}")
            params = operation.get("parameters", [])
            path_params = [p["name"] for p in params if p["in"] == "path"]
            query = {p["name"]: FIXED_QUERY[p["name"]] for p in params if p["in"] == "query" and p["name"] in FIXED_QUERY
                     and FIXED_QUERY[p["name"]] is not None and (p.get("required") or p["name"] in ("format", "limit"))}
            query |= {p["name"]: _own(p["name"], user) for p in params
                      if p["in"] == "query" and p.get("required") and p["name"] not in FIXED_QUERY}
            tries: list[tuple[str, dict[str, str], str | None]] = []  # (path, query, the foreign id given)
            for name in path_params:
                tries += [(_fill(path, name, v), query, v) for v in _values(name, user)]
            for p in params:
                if p["in"] == "query" and p["name"] not in FIXED_QUERY and p["name"] not in ("target_plan",):
                    values = _values(p["name"], user)
                    tries += [(path, {**query, p["name"]: v}, v) for v in values]
            if path == "/api/transfers/preview":  # exactly one of target_plan and target_subscription
                mine = sorted(tenants.own_customers(user))[0]
                tries = [(path, {"source": v, "seats": "1", "target_plan": "plan-x"}, v) for v in _values("source", user)]
                tries += [(path, {"source": f"{mine}-s1", "seats": "1", "target_subscription": v}, v)
                          for v in _values("target_subscription", user)]
            if not path_params and not tries:
                tries = [(path, query, None)]
            for target, q, given in tries:
                url = api + target + ("?" + urllib.parse.urlencode(q) if q else "")
                if method == "GET":
                    status, body = call(url, token=token)
                    assert status < 500, (user, url, status, body)
                    if status == 200:
                        assert not _leaks(body, foreign), (user, url, _leaks(body, foreign))
                    elif given is not None and status == 404:
                        # Exactly as an id that does not exist: same status, same words.
                        status2, body2 = call(url.replace(urllib.parse.quote(given, safe=""), UNKNOWN), token=token)
                        assert (status2, json.dumps(body2)) == (404, json.dumps(body).replace(given, UNKNOWN)), (user, url)
                    else:
                        assert status in (403, 404), (user, url, status, body)
                else:
                    for body_sent in _bodies(path, foreign, own_partner):
                        status, body = call(url, method, body_sent, token=token, key=f"{user}-{target}-{json.dumps(body_sent)}"[:200])
                        assert status in (403, 404), (user, method, url, body_sent, status, body)
                        assert not _leaks({k: v for k, v in body.items() if k != "detail"}, foreign)
    assert "GET /api/customers/{customer_id}" in walked and "POST /api/bulk" in walked  # the document was read
    assert placed(world) == [], "a tenant's write reached the broker"


def _rows(api: str, token: str, path: str) -> list[dict[str, Any]]:
    status, page = call(f"{api}{path}", token=token)
    assert status == 200, page
    return page["items"]  # type: ignore[no-any-return]


@pytest.mark.integration
def test_lists_exports_and_counts_hold_only_the_callers_rows(api: str, provider: Provider) -> None:
    for user in tenants.TENANT_USERS:
        token, own = provider.mint(user), tenants.own_customers(user)
        assert {c["customer_id"] for c in _rows(api, token, "/api/customers?limit=500")} == own
        assert {o["customer_id"] for o in _rows(api, token, "/api/operations?limit=500")} == own
        status, stats = call(f"{api}/api/stats", token=token)
        assert status == 200 and stats["operations"]["total"] == len(own) and stats["dead_letters"]["total"] == 0
        assert sum(p["subscriptions"] for p in stats["seats_by_plan"].values()) == 2 * len(own)
        partners = {tenants.CUSTOMERS[c][0] for c in own}
        bulks = _rows(api, token, "/api/bulk")
        assert {b["partner_id"] for b in bulks} == partners
        for bulk in bulks:
            request = urllib.request.Request(f"{api}/api/bulk/{bulk['bulk_id']}?format=csv",
                                             headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=10) as answer:
                csv_text = answer.read().decode()
            customers = {line.split(",")[1] for line in csv_text.strip().splitlines()[1:]}
            assert customers == own & {c for c, (p, _) in tenants.CUSTOMERS.items() if p == bulk["partner_id"]}
    staff = provider.mint("sam")
    assert len(_rows(api, staff, "/api/customers?limit=500")) == len(tenants.CUSTOMERS)


@pytest.mark.integration
def test_who_the_token_says_and_what_it_may_not_be(api: str, provider: Provider) -> None:
    status, me = call(f"{api}/api/me", token=provider.mint("dora"))
    assert status == 200 and me["tenant"] == {"kind": "distributor", "id": "D-NORTH"} and me["user"] == "dora"
    assert me["privileges"] == ["Usage-Based Migration"] and me["staff"] is False
    assert call(f"{api}/api/me", token=provider.mint("dan"))[1]["privileges"] == []
    # A partner role without its partner_id is refused, never read as provider staff; so is a token with no coterm role.
    for user in ("nobody", "stranger"):
        status, body = call(f"{api}/api/customers", token=provider.mint(user))
        assert (status, body["error"]) == (403, "FORBIDDEN"), user
    # Staff-only reads and metrics.
    for path in ("/api/deadletters", f"/api/deadletters/{DEADLETTER}", "/metrics"):
        assert call(api + path, token=provider.mint("pam"))[0] == 403, path
    assert call(api + "/api/deadletters", token=provider.mint("sam"))[0] == 200
    # A distributor cancels only a bulk all of whose customers are its own; a partner its own bulk.
    status, body = call(f"{api}/api/bulk/bulk-P-ALPHA/cancel", "POST", {"reason": "x"}, token=provider.mint("dora"), key="c1")
    assert (status, body["error"]) == (403, "FORBIDDEN"), body
    status, body = call(f"{api}/api/bulk/bulk-P-ALPHA/cancel", "POST", {"reason": "x"}, token=provider.mint("pam"), key="c2")
    assert (status, body["error"]) == (409, "BULK_CLOSED"), body  # its own, already finished
    # Viewers place nothing, even for their own customers.
    status, body = call(f"{api}/api/migrations", "POST", {"customer_id": "cu-acme-pa", "product_ids": ["prod-e3"]},
                        token=provider.mint("pete"), key="k")
    assert (status, body["error"]) == (403, "FORBIDDEN")


@pytest.mark.integration
def test_partners_and_distributors_migrate_their_own_customers(api: str, world: Scenario, provider: Provider) -> None:
    pam, dora, quinn = provider.mint("pam"), provider.mint("dora"), provider.mint("quinn")
    status, answer = call(f"{api}/api/migrations", "POST", {"customer_id": "cu-acme-pa", "product_ids": ["prod-epp"]},
                          token=pam, key="pam-1")
    assert status == 202 and answer["by"] == "pam"
    # A distributor's "all of the reseller's customers" is its own of them, listed when placed.
    status, bulk = call(f"{api}/api/bulk", "POST", {"partner_id": "P-BRAVO", "product_ids": ["prod-epp"],
                                                    "all_customers_of_partner": True}, token=dora, key="dora-1")
    assert status == 202
    # Neither a list nor "all": refused as for anyone (the contract's own words), not read as "all".
    status, body = call(f"{api}/api/bulk", "POST", {"partner_id": "P-BRAVO", "product_ids": ["prod-epp"]},
                        token=dora, key="dora-0")
    assert (status, body["error"]) == (400, "INVALID_ORDER"), body
    # A partner's bulk is its own partner's, named or not.
    status, own_bulk = call(f"{api}/api/bulk", "POST", {"product_ids": ["prod-epp"], "all_customers_of_partner": True},
                            token=quinn, key="quinn-1")
    assert status == 202
    messages = {m["type"]: m for m in placed(world) if m["type"] != "migration.requested"}
    [dora_bulk] = [m for m in placed(world) if m["payload"].get("requested_by") == "dora"]
    assert dora_bulk["payload"]["customer_ids"] == ["cu-dune-pb"] and "all_customers_of_partner" not in dora_bulk["payload"]
    [quinn_bulk] = [m for m in placed(world) if m["payload"].get("requested_by") == "quinn"]
    assert quinn_bulk["payload"]["partner_id"] == "P-BRAVO" and quinn_bulk["payload"]["all_customers_of_partner"] is True
    assert messages
    world.process()
    status, decided = call(f"{api}{answer['follow']}", token=pam)
    assert status == 200 and decided["decisions"][-1]["requested_by"] == "pam"
    assert call(f"{api}{answer['follow']}", token=quinn)[0] == 404
    status, report = call(f"{api}{bulk['follow']}", token=dora)
    assert status == 200 and [c["customer_id"] for c in report["customers"]] == ["cu-dune-pb"]
    status, seen_by_quinn = call(f"{api}{bulk['follow']}", token=quinn)
    assert status == 200 and [c["customer_id"] for c in seen_by_quinn["customers"]] == ["cu-dune-pb"]
    assert call(f"{api}{bulk['follow']}", token=pam)[0] == 404
    # The audit trail: who placed it and for which tenant.
    app = world.open_store()
    try:
        submission = app.repository.get(Submission.create_id("pam", "pam-1"))
        assert (submission.by, submission.tenant) == ("pam", "partner P-ALPHA")
        assert app.repository.get(Submission.create_id("dora", "dora-1")).tenant == "distributor D-NORTH"
    finally:
        app.close()


def _reach(user: str) -> tuple[set[str], set[str]]:
    """The customers and partners a user may place orders for."""
    own = tenants.own_customers(user)
    return own, {tenants.CUSTOMERS[c][0] for c in own}


@pytest.mark.integration
@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_schemathesis_drives_every_route_as_each_tenant_and_finds_no_foreign_row(api: str, world: Scenario,
                                                                                   provider: Provider) -> None:
    """Schemathesis makes requests of every operation in the OpenAPI document (random, and with
    another tenant's ids put into the path and the query): no answer is a 5xx, no answer holds
    another tenant's id, and whatever a tenant's administrator placed is for its own customers.
    On PostgreSQL only (the stricter store: it found a U+0000 that SQLite takes); the walk above
    covers both stores' SQL."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    _, document = call(api + "/openapi.json")
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{o.method.upper()} {o.path}" for o in operations} >= {"GET /api/customers/{customer_id}", "POST /api/bulk"}
    id_params = ("customer_id", "operation_id", "request_id", "bulk_id", "customer", "source", "target_subscription",
                 "partner", "q")
    for user in ("pam", "dora", "sam"):  # provider staff too: every route, no 5xx
        token = provider.mint(user)
        foreign = sorted(tenants.foreign_ids(user)) if user != "sam" else []
        hostile_ids = foreign or sorted(i for c in tenants.CUSTOMERS for i in tenants.ids_of(c))
        for operation in operations:
            @settings(max_examples=8, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(), hostile=st.sampled_from(hostile_ids), swap=st.booleans())
            def request(case: Any, hostile: str, swap: bool) -> None:
                if swap:  # another tenant's id wherever an id goes
                    for name in list(case.path_parameters or {}):
                        if name in id_params:
                            case.path_parameters[name] = hostile
                    for name in list(case.query or {}):
                        if name in id_params:
                            case.query[name] = hostile
                response = case.call(base_url=api, headers={"Authorization": f"Bearer {token}"})
                assert response.status_code < 500, (user, case.method, case.formatted_path, case.query, case.body,
                                                     case.headers, response.text[:300])
                if response.status_code == 200:
                    leaks = _leaks(response.text, set(foreign))
                    assert not leaks, (user, case.method, case.formatted_path, case.query, leaks)

            request()
        if user == "sam":
            continue
        own, partners = _reach(user)
        for message in placed(world):
            payload = message["payload"]
            if payload.get("requested_by") != user:
                continue
            assert set(payload.get("customer_ids") or []) <= own and payload.get("customer_id", next(iter(own))) in own
            assert payload.get("partner_id", next(iter(partners))) in partners, message
