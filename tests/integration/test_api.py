"""The query API and staff actions over real HTTP, on a real store."""

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from aggregates import bulk_commands, commands
from aggregates.transfer import Transfer
from processor.store.opening import open_store
from projections.staff import Staff, StaffError, hash_token
from tests import seed
from tests.http_server import call, serving
from tests.staff_users import ADMIN, SUPPORT
from tests.waiting import wait_for


@pytest.fixture
def app(store: str):  # type: ignore[no-untyped-def]
    orders = open_store(store)
    seed.customer_with_subscriptions(orders)
    for n, outcome in enumerate(seed.OUTCOMES):
        seed.operation(orders, f"op-{n}", outcome)
    yield orders
    orders.close()


@pytest.fixture
def api(app, staff: Staff) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with serving(app, staff) as url:
        yield url


def test_health_and_stats(api: str) -> None:
    status, health = call(f"{api}/healthz")
    assert status == 200 and health["ok"] and health["read_model_position"] == health["store_position"]
    status, stats = call(f"{api}/api/stats", token=SUPPORT)
    assert status == 200
    assert stats["operations"]["total"] == 7
    assert stats["operations"]["by_status"]["failed"] == 2 and stats["operations"]["by_reason"]["PAIRING_TIMEOUT"] == 1
    ended = stats["ended_per_minute"]
    assert sum(m["completed"] for m in ended) == stats["operations"]["by_status"]["completed"]
    assert sum(m["not_completed"] for m in ended) == sum(stats["operations"]["by_status"][s] for s in
                                                         ("rejected", "failed", "expired", "cancelled"))
    assert stats["vendor_latency_ms"]["p50"] == 120 and stats["seats_by_plan"]["plan-nce"]["seats"] == 99


def test_filters_and_stable_cursor_pagination(app, api: str) -> None:  # type: ignore[no-untyped-def]
    status, failed = call(f"{api}/api/operations?status=failed", token=SUPPORT)
    assert status == 200 and {o["operation_id"] for o in failed["items"]} == {"op-2", "op-3"}
    assert [o["operation_id"] for o in call(f"{api}/api/operations?reason=PAIRING_TIMEOUT", token=SUPPORT)[1]["items"]] == ["op-5"]
    assert call(f"{api}/api/operations?customer=nobody", token=SUPPORT)[1]["items"] == []
    assert len(call(f"{api}/api/operations?since=2020-01-01", token=SUPPORT)[1]["items"]) == 7
    assert call(f"{api}/api/operations?until=2020-01-01", token=SUPPORT)[1]["items"] == []
    seen, cursor = [], None
    while True:
        page = call(f"{api}/api/operations?limit=3" + (f"&cursor={cursor}" if cursor else ""), token=SUPPORT)[1]
        seen += [o["operation_id"] for o in page["items"]]
        if len(seen) == 3:
            seed.operation(app, "op-new", "waiting")  # a new operation between pages moves nothing
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == [f"op-{n}" for n in range(7)]


@pytest.mark.parametrize("query", ["status=bogus", "limit=0", "limit=501", "limit=x", "cursor=garbage",
                                   "since=yesterday", "until=2026-13-01"])
def test_bad_parameters_get_400_with_a_reason(api: str, query: str) -> None:
    status, body = call(f"{api}/api/operations?{query}", token=SUPPORT)
    assert status == 400 and body["error"] == "BAD_PARAMETER" and body["detail"]


def test_unknown_ids_are_404(api: str) -> None:
    assert call(f"{api}/api/operations/nope", token=SUPPORT)[0] == 404
    assert call(f"{api}/api/customers/nope", token=SUPPORT)[0] == 404
    assert call(f"{api}/api/customers/c1?on=not-a-date", token=SUPPORT)[0] == 400


def test_operation_timeline_and_customer_page(api: str) -> None:
    status, op = call(f"{api}/api/operations/op-0", token=SUPPORT)
    assert status == 200
    # Opened holds the first half, the vendor call the second (VendorCallRequested v4)
    assert [e["type"] for e in op["timeline"]] == ["Opened", "VendorCallRequested", "Completed"]
    assert all(e["message_id"] for e in op["timeline"][1:])
    status, customer = call(f"{api}/api/customers/c1?on=2026-11-02", token=SUPPORT)
    assert status == 200
    eligibility = {p["product_id"]: p for p in customer["migration_eligibility"]["products"]}
    assert eligibility["p1"]["reason_code"] == "NOT_IN_RENEWAL_WINDOW" and eligibility["p1"]["eligible_from"] == "2027-04-01"
    later = {p["product_id"]: p for p in call(f"{api}/api/customers/c1?on=2027-04-01", token=SUPPORT)[1]["migration_eligibility"]["products"]}
    assert later["p1"]["eligible"] is True
    assert {s["subscription_id"] for s in customer["subscriptions"]} >= {"c1-s1", "c1-epp"}


def test_actions_need_a_privileged_token(app, api: str) -> None:  # type: ignore[no-untyped-def]
    url = f"{api}/api/operations/op-4/cancel"
    assert call(url, "POST", {"reason": "x"})[0] == 401
    assert call(url, "POST", {"reason": "x"}, token="wrong-token-0123456789")[0] == 401
    assert call(url, "POST", {"reason": "x"}, token=SUPPORT)[0] == 403
    assert call(url, "POST", {}, token=ADMIN)[0] == 400  # why is required
    status, done = call(url, "POST", {"reason": "customer called"}, token=ADMIN)
    assert status == 200 and done["status"] == "cancelled" and done["by"] == "alice"
    cancelled = [e for e in app.events.get(Transfer.create_id("op-4")) if type(e).__name__ == "Cancelled"][0]
    assert (cancelled.requested_by, cancelled.reason, cancelled.message_id) == ("alice", "customer called", done["action_id"])
    status, again = call(url, "POST", {"reason": "twice"}, token=ADMIN)
    assert status == 409 and again["error"] == "OPERATION_CLOSED"
    assert call(f"{api}/api/operations/nope/cancel", "POST", {"reason": "x"}, token=ADMIN)[0] == 404


def test_retry_of_a_parked_failure_requests_the_call_again(app, api: str) -> None:  # type: ignore[no-untyped-def]
    status, done = call(f"{api}/api/operations/op-2/retry", "POST", {"reason": "vendor is back"}, token=ADMIN)
    assert status == 200 and done["status"] == "paired"
    status, redo = call(f"{api}/api/operations/op-3/retry", "POST", {"reason": "plan fixed at the vendor"}, token=ADMIN)
    assert status == 200 and redo["status"] == "paired"  # VENDOR_REJECTED, once its cause is fixed
    requested = [e for e in app.events.get(Transfer.create_id("op-3")) if type(e).__name__ == "VendorCallRequested"]
    assert [e.idempotency_key for e in requested] == ["op-3", "op-3:retry-1"]  # a new request, a new key
    assert call(f"{api}/api/operations/op-3/retry", "POST", {"reason": "x"}, token=ADMIN)[0] == 409  # now in flight
    assert call(f"{api}/api/operations/op-5/retry", "POST", {"reason": "x"}, token=ADMIN)[0] == 409  # expired
    op = call(f"{api}/api/operations/op-2", token=SUPPORT)[1]
    assert op["actions"][-1]["by"] == "alice" and op["actions"][-1]["why"] == "vendor is back"


def test_without_a_staff_file_actions_are_refused(app) -> None:  # type: ignore[no-untyped-def]
    with serving(app, Staff.load(None)) as url:
        assert call(f"{url}/api/operations/op-4/cancel", "POST", {"reason": "x"}, token=ADMIN)[0] == 401
        assert call(f"{url}/openapi.json")[0] == 200
        assert call(f"{url}/api/operations/op-4")[0] == 200  # without a staff file, reads are open


def test_with_a_staff_file_every_api_read_needs_a_token(api: str) -> None:
    for path in ("/api/stats", "/api/operations", "/api/operations/op-0", "/api/customers/c1", "/api/operations/nope",
                 "/api/customers/c1?on=not-a-date", "/api/operations?limit=0"):
        status, body = call(f"{api}{path}")
        assert (status, body["error"]) == (401, "UNAUTHENTICATED"), path  # before any 404 or 400
        assert call(f"{api}{path}", token="wrong-token-0123456789")[0] == 401, path
    assert call(f"{api}/api/stats", token=SUPPORT)[0] == 200  # any staff user reads; acting needs the privilege
    assert call(f"{api}/healthz")[0] == 200  # open: liveness, and the page that asks for the token
    with urllib.request.urlopen(f"{api}/", timeout=10) as page:
        assert page.status == 200 and b'id="login"' in page.read()


def test_authentication_comes_before_any_validation_of_the_body(api: str) -> None:
    url = f"{api}/api/operations/op-4/cancel"
    for body in (None, b"{not json", b"[]", {"why": 1}):
        status, answer = raw(url, body)
        assert (status, answer["error"]) == (401, "UNAUTHENTICATED"), body
        assert raw(url, body, token=SUPPORT)[0] == 403, body  # known user without the privilege: still no validation
        assert raw(url, body, token=ADMIN)[0] == 400, body  # only now is the body looked at
    status, answer = raw(url, {"reason": "x" * 100_000}, token=ADMIN)
    assert (status, answer["error"]) == (413, "BODY_TOO_LARGE")
    assert call(url, "POST", {"reason": "x" * 501}, token=ADMIN)[0] == 400  # a reason is at most 500 characters


def test_a_staff_file_may_hold_token_hashes_only(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "hashed.json"
    path.write_text(json.dumps({"users": [{"name": "carol", "token_sha256": hash_token(ADMIN),
                                           "roles": ["Account Administrator"]}]}))
    with serving(app, Staff.load(str(path))) as url:
        assert call(f"{url}/api/stats", token=ADMIN)[0] == 200
        assert call(f"{url}/api/stats", token=hash_token(ADMIN))[0] == 401  # the hash itself is no credential
        status, done = call(f"{url}/api/operations/op-4/cancel", "POST", {"reason": "hashed"}, token=ADMIN)
        assert status == 200 and done["by"] == "carol"


@pytest.mark.parametrize("user", [{"name": "x"}, {"name": "x", "token": ADMIN, "token_sha256": hash_token(ADMIN)},
                                  {"name": "x", "token_sha256": "not-hex"}, {"name": "x", "token": "short"}])
def test_a_staff_user_needs_exactly_one_valid_credential(tmp_path: Path, user: dict) -> None:  # type: ignore[type-arg]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"users": [user]}))
    with pytest.raises(StaffError, match="not a valid staff file"):
        Staff.load(str(path))


def raw(url: str, body: object, token: str | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    """POST a missing or malformed body, or any JSON value."""
    return call(url, "POST", body if body is not None else b"", token)  # type: ignore[no-any-return]


def test_api_docs_work_offline(api: str) -> None:
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        with urllib.request.urlopen(f"{api}{page}", timeout=10) as response:
            html = response.read().decode()
        assert f"/static/docs/{asset}" in html and "cdn" not in html.lower(), page  # nothing from the internet
        with urllib.request.urlopen(f"{api}/static/docs/{asset}", timeout=10) as response:
            assert response.status == 200 and len(response.read()) > 100_000


def test_transfer_and_migration_previews_record_nothing(app, api: str) -> None:  # type: ignore[no-untyped-def]
    head = app.process_recorder.max_notification_id()
    preview = f"{api}/api/transfers/preview?source=c1-s1&seats=3"
    status, v = call(f"{preview}&target_plan=plan-e5&on=2026-11-03", token=SUPPORT)
    assert status == 200 and (v["decision"], v["reason_code"], v["refusals"]) == ("accepted", None, [])
    assert v["vendor_request"]["target"]["billing_start_date"] == "2026-11-04"  # the call it would make
    # On the purchase day: refused, and it would pass the next day.
    status, v = call(f"{preview}&target_plan=plan-e5&on=2026-01-05", token=SUPPORT)
    assert (v["reason_code"], v["eligible_from"], v["facts"]) == ("SAME_DAY_AS_PURCHASE", "2026-01-06", {})
    # Every rule that refuses, in table order; a term mismatch no date cures.
    status, v = call(f"{preview}&target_plan=plan-e5&term_months=1&on=2026-01-05", token=SUPPORT)
    assert [r["reason_code"] for r in v["refusals"]] == ["SAME_DAY_AS_PURCHASE", "TERM_LENGTH_MISMATCH"]
    assert v["refusals"][1]["facts"] == {"target_term_months": 1, "source_term_months": 12}
    assert v["eligible_from"] is None
    # Before the source starts: it would pass the day after its start (the start day itself refuses).
    status, v = call(f"{preview}&target_subscription=c1-epp&on=2025-12-01", token=SUPPORT)
    assert v["reason_code"] == "SUBSCRIPTION_UNKNOWN" and v["eligible_from"] == "2026-01-06"
    status, v = call(f"{api}/api/transfers/preview?source=nope&seats=3&target_plan=x&on=2026-11-03", token=SUPPORT)
    assert status == 200 and v["reason_code"] == "SUBSCRIPTION_UNKNOWN" and v["eligible_from"] is None
    for bad in ("&on=2026-11-03", "&target_plan=x&target_subscription=y", "&target_subscription=y&term_months=12"):
        status, body = call(preview + bad, token=SUPPORT)
        assert status == 400 and body["error"] == "BAD_PARAMETER", bad
    assert call(f"{api}/api/transfers/preview?source=c1-s1&seats=0&target_plan=x", token=SUPPORT)[0] == 400
    status, m = call(f"{api}/api/migrations/preview?customer=c1&product=p1&product=nce&on=2026-11-02", token=SUPPORT)
    assert status == 200 and m["decision"] == "rejected"
    by_product = {p["product_id"]: p for p in m["products"]}
    assert (by_product["p1"]["reason_code"], by_product["p1"]["eligible_from"]) == ("NOT_IN_RENEWAL_WINDOW", "2027-04-01")
    assert by_product["nce"]["reason_code"] == "PRODUCT_NOT_SUPPORTED" and by_product["nce"]["eligible_from"] is None
    assert app.process_recorder.max_notification_id() == head  # nothing recorded


def test_bulk_view_list_and_csv(app, staff: Staff) -> None:  # type: ignore[no-untyped-def]
    seed.run(app, bulk_commands.request_bulk, "bulk-7", {
        "partner_id": "p", "requested_by": "partner@x", "product_ids": ["p1", "nce"], "customer_ids": ["c1", "ghost"],
        "all_customers_of_partner": False})
    with serving(app, staff) as api:
        status, bulk = call(f"{api}/api/bulk/bulk-7", token=SUPPORT)
        assert status == 200 and bulk["status"] == "deciding" and bulk["next_due"] == "2027-04-01"
        rows = {(c["customer_id"], p["product_id"]): (p["outcome"], p["reason_code"], p["on"])
                for c in bulk["customers"] for p in c["products"]}
        assert rows == {("c1", "p1"): ("scheduled", "NOT_IN_RENEWAL_WINDOW", "2027-04-01"),
                        ("c1", "nce"): ("rejected", "PRODUCT_NOT_SUPPORTED", "2026-11-02"),
                        ("ghost", "p1"): ("rejected", "CUSTOMER_UNKNOWN", "2026-11-02"),
                        ("ghost", "nce"): ("rejected", "CUSTOMER_UNKNOWN", "2026-11-02")}
        assert bulk["counts"] == {"migrated": 0, "rejected": 3, "scheduled": 1, "cancelled": 0}
        status, listed = call(f"{api}/api/bulk?partner=p", token=SUPPORT)
        assert [b["bulk_id"] for b in listed["items"]] == ["bulk-7"] and listed["items"][0]["customers"] == 2
        request = urllib.request.Request(f"{api}/api/bulk/bulk-7?format=csv", headers={"Authorization": f"Bearer {SUPPORT}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["content-type"].startswith("text/csv")
            lines = response.read().decode().splitlines()
        assert lines[0].startswith("bulk_id,customer_id,product_id,outcome,reason_code,date") and len(lines) == 5
        assert "bulk-7,c1,p1,scheduled,NOT_IN_RENEWAL_WINDOW,2027-04-01" in lines[1]
        assert call(f"{api}/api/bulk/nope", token=SUPPORT)[0] == 404
        assert call(f"{api}/api/bulk/bulk-7?format=xml", token=SUPPORT)[0] == 400
        assert call(f"{api}/api/bulk?status=bogus", token=SUPPORT)[0] == 400
        assert call(f"{api}/api/bulk/bulk-7")[0] == 401  # reads need a token with a staff file


def test_a_call_waiting_behind_a_parked_one_says_what_it_waits_for(app, api: str) -> None:  # type: ignore[no-untyped-def]
    import time

    seed.half(app, "downgrade", "op-w")  # from c1-s1, where op-2 is parked VENDOR_UNAVAILABLE
    seed.half(app, "upgrade", "op-w")
    deadline = time.monotonic() + 10
    while (op := call(f"{api}/api/operations/op-w", token=SUPPORT)[1]).get("status") != "paired":
        assert time.monotonic() < deadline, op
        time.sleep(0.1)
    assert op["waits_for"] == [{"operation_id": "op-2", "subscription_id": "c1-s1", "status": "failed",
                                "reason_code": "VENDOR_UNAVAILABLE"}]
    parked = call(f"{api}/api/operations/op-2", token=SUPPORT)[1]
    assert parked["waits_for"] == []


def test_customer_list_pages_and_searches_by_id_or_name(app, api: str) -> None:  # type: ignore[no-untyped-def]
    seed.run(app, commands.register_customer, "c2", partner_id="p", name="Zoë & Söhne", channel="direct",
             distributor_id=None, data_complete=True)
    seed.run(app, commands.register_customer, "c_3", partner_id="p", name="Third 100%", channel="direct",
             distributor_id=None, data_complete=True)
    wait_for(lambda: len(call(f"{api}/api/customers", token=SUPPORT)[1]["items"]) == 3)  # the read models follow
    status, page = call(f"{api}/api/customers", token=SUPPORT)
    assert status == 200 and [c["customer_id"] for c in page["items"]] == ["c1", "c2", "c_3"]
    assert page["items"][0] == {**page["items"][0], "name": "Customer c1", "subscriptions": 3, "usage_based_bundle": False}  # 2 + op-0's new one
    seen, cursor = [], None
    while True:
        page = call(f"{api}/api/customers?limit=1" + (f"&cursor={cursor}" if cursor else ""), token=SUPPORT)[1]
        seen += [c["customer_id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["c1", "c2", "c_3"]
    for q, found in (("CUSTOMER", ["c1"]), ("zoë", ["c2"]), ("söhne", ["c2"]), ("_", ["c_3"]), ("100%", ["c_3"]),
                     ("c", ["c1", "c2", "c_3"]), ("nobody", [])):
        assert [c["customer_id"] for c in call(f"{api}/api/customers?q={urllib.parse.quote(q)}", token=SUPPORT)[1]["items"]] == found, q
    assert call(f"{api}/api/customers?cursor=garbage", token=SUPPORT)[0] == 400


def test_allowed_actions_say_what_cancel_and_retry_will_answer(app, api: str) -> None:  # type: ignore[no-untyped-def]
    for n, outcome in enumerate(seed.OUTCOMES):
        seed.operation(app, f"k-{n}", outcome)
    wait_for(lambda: call(f"{api}/api/operations/k-{len(seed.OUTCOMES) - 1}", token=ADMIN)[0] == 200)
    for prefix, action in (("op", "retry"), ("k", "cancel")):
        for n in range(len(seed.OUTCOMES)):
            predicted = call(f"{api}/api/operations/{prefix}-{n}", token=ADMIN)[1]["allowed_actions"][action]
            status, answer = call(f"{api}/api/operations/{prefix}-{n}/{action}", "POST", {"reason": "check"}, token=ADMIN)
            assert (status == 200) == predicted["allowed"], (prefix, n, action, predicted, answer)
            if not predicted["allowed"]:
                assert (answer["error"], answer["detail"]) == (predicted["reason_code"], predicted["why_not"])


def test_a_staff_cancel_of_a_parked_call_frees_its_seats_and_place(app, api: str) -> None:  # type: ignore[no-untyped-def]
    def held() -> list[str]:
        subs = call(f"{api}/api/customers/c1", token=SUPPORT)[1]["subscriptions"]
        return [t["operation_id"] for s in subs if s["subscription_id"] == "c1-s1" for t in s["in_flight"]]

    wait_for(lambda: "op-2" in held(), what="the parked call in line")  # VENDOR_UNAVAILABLE keeps seats and place
    status, answer = call(f"{api}/api/operations/op-2/cancel", "POST", {"reason": "customer withdrew"}, token=ADMIN)
    assert status == 200, answer
    wait_for(lambda: "op-2" not in held(), what="the cancelled call leaving the line")
