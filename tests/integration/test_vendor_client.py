"""The vendor client against the simulator over real HTTP: keys, 409s, 4xx, 5xx, refused connections."""

from processor.dev.broker import free_port
from processor.dev.vendor_sim import Faults, VendorSimulator
from processor.outbox.vendor_client import VendorClient

REQUEST = {"operation_id": "op-1", "customer_id": "c",
           "source": {"subscription_id": "s", "seats_before": 10, "seats_after": 7},
           "target": {"kind": "existing_subscription", "subscription_id": "t", "seats_before": 1, "seats_after": 4},
           "seats": 3}


def fast(url: str, attempts: int = 3) -> VendorClient:
    return VendorClient(url, max_attempts=attempts, backoff_initial_s=0.01, backoff_max_s=0.02, timeout_s=2)


def test_a_repeated_key_gets_409_and_the_first_reference(vendor: VendorSimulator) -> None:
    first = fast(vendor.url).send(REQUEST)
    again = fast(vendor.url).send(REQUEST)
    assert first.ok and again.ok and first.vendor_reference == again.vendor_reference
    assert [r["key"] for r in vendor.state.requests] == ["op-1", "op-1"]
    assert len(vendor.state.accepted) == 1


def test_5xx_are_retried_with_the_same_body_then_given_up(vendor: VendorSimulator) -> None:
    vendor.state.faults = Faults(fail_rate=1.0)
    outcome = fast(vendor.url, attempts=3).send(REQUEST)
    assert (outcome.ok, outcome.reason_code, outcome.retryable, outcome.attempts) == (False, "VENDOR_UNAVAILABLE", True, 3)
    assert len({r["body"] for r in vendor.state.requests}) == 1 and len(vendor.state.requests) == 3


def test_a_4xx_is_permanent(vendor: VendorSimulator) -> None:
    outcome = fast(vendor.url).send({**REQUEST, "seats": 0})  # the simulator validates the body: 400
    assert (outcome.ok, outcome.reason_code, outcome.retryable, outcome.attempts) == (False, "VENDOR_REJECTED", False, 1)


def test_refused_connections_are_retried() -> None:
    outcome = fast(f"http://127.0.0.1:{free_port()}", attempts=2).send(REQUEST)
    assert (outcome.reason_code, outcome.attempts) == ("VENDOR_UNAVAILABLE", 2)
    assert "Connection refused" in outcome.detail or "URLError" in outcome.detail
