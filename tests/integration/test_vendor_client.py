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


def _times(vendor: VendorSimulator) -> list[tuple[float, int, str | None]]:
    return [(r["at"], r["status"], r.get("retry_after")) for r in vendor.state.requests]


def test_429_and_408_are_retried_with_the_same_key_and_body_never_before_retry_after(vendor: VendorSimulator) -> None:
    vendor.state.faults = Faults(script=[{"status": 429, "retry_after": 2}, {"status": 408},
                                         {"status": 429, "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT"}])  # a past date: 0
    outcome = fast(vendor.url, attempts=4).send(REQUEST)
    assert outcome.ok and outcome.attempts == 4
    attempts = _times(vendor)
    assert [status for _, status, _ in attempts] == [429, 408, 429, 201]
    assert attempts[1][0] - attempts[0][0] >= 2.0  # the Retry-After of the first answer, at least
    assert len({(r["key"], r["body"]) for r in vendor.state.requests}) == 1


def test_a_hostile_retry_after_is_cut_to_the_setting(vendor: VendorSimulator) -> None:
    vendor.state.faults = Faults(script=[{"status": 429, "retry_after": 86400}])
    client = VendorClient(vendor.url, max_attempts=2, backoff_initial_s=0.01, backoff_max_s=0.02, retry_after_max_s=0.5)
    outcome = client.send(REQUEST)
    first, second = _times(vendor)
    assert outcome.ok and 0.5 <= second[0] - first[0] < 5


def test_a_redirect_parks_the_call_at_once_naming_the_url(vendor: VendorSimulator) -> None:
    vendor.state.faults = Faults(script=[{"status": 301, "location": "https://portal.vendor.example/login"}])
    outcome = fast(vendor.url, attempts=5).send(REQUEST)
    assert (outcome.ok, outcome.reason_code, outcome.retryable, outcome.attempts) == (False, "VENDOR_UNAVAILABLE", True, 1)
    assert "COTERM_VENDOR_URL" in outcome.detail and "portal.vendor.example" in outcome.detail


def test_throttled_calls_lower_the_calls_sent_at_once(vendor: VendorSimulator) -> None:
    """64 calls through 32 slots against a slow vendor; once many are open it starts answering 429
    to most attempts: the shared limiter lowers the calls out at once, and every call still
    completes, once."""
    import threading

    from processor.outbox.throttle import Limiter
    from tests.waiting import wait_for

    # Calls of a whole second while they ramp up: on a loaded machine (CI's four workers and a
    # storm) 32 threads take longer than a shorter call lasts to be out together.
    vendor.state.faults = Faults(delay_s=1.0)
    limiter = Limiter(32, cooldown_s=0.05)
    client = VendorClient(vendor.url, max_attempts=60, backoff_initial_s=0.01, backoff_max_s=0.05, limiter=limiter)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda n=n: results.append(client.send({**REQUEST, "operation_id": f"op-{n}"}).ok))
               for n in range(64)]
    for thread in threads:
        thread.start()
    wait_for(lambda: vendor.state.most_open >= 20, 30, "many calls open at once")
    before = vendor.state.most_open
    with vendor.state.lock:
        vendor.state.faults = Faults(delay_s=0.3, throttle_share=0.6, retry_after_s=[0, 0])
    for thread in threads:
        thread.join(120)
    assert results == [True] * 64 and len(vendor.state.accepted) == 64
    assert limiter.throttled > 0 and limiter.limit < 32
    # Soon after the first 429 (the calls already out have been answered), fewer are open at once.
    first_429 = next(r["at"] for r in vendor.state.requests if r["status"] == 429)
    later = [r["open"] for r in vendor.state.requests if r["at"] > first_429 + 1.5]
    assert later and max(later) <= 16 < before, (before, later[:20])


def test_the_simulator_answers_the_seats_its_calls_left_and_those_set_behind_coterms_back(vendor: VendorSimulator) -> None:
    import json as json_
    import urllib.error
    import urllib.request

    def seats(sub: str) -> tuple[int, dict]:  # type: ignore[type-arg]
        try:
            with urllib.request.urlopen(f"{vendor.url}/v1/subscriptions/{sub}", timeout=5) as answer:
                return answer.status, json_.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json_.loads(error.read())

    assert seats("s")[0] == 404
    assert fast(vendor.url).send(REQUEST).ok
    assert seats("s") == (200, {"subscription_id": "s", "seats": 7}) and seats("t")[1]["seats"] == 4
    urllib.request.urlopen(urllib.request.Request(f"{vendor.url}/_sim/seats", data=b'{"s": 9}', method="POST"), timeout=5)
    assert seats("s")[1]["seats"] == 9  # changed in the vendor's own portal
    vendor.state.faults = Faults(script=[{"status": 429, "retry_after": 1}])
    assert seats("s")[0] == 429


def test_a_call_waiting_for_a_slot_asks_again_whether_it_may_send(vendor: VendorSimulator) -> None:
    """The leadership may lapse while a call waits for the limiter: it is then not sent."""
    import threading
    import time

    from processor.outbox.throttle import Limiter
    from processor.outbox.vendor_client import Stopped

    limiter, lead = Limiter(1), threading.Event()
    lead.set()
    assert limiter.acquire(threading.Event())  # the one slot, taken by another call
    client = VendorClient(vendor.url, max_attempts=2, limiter=limiter)
    outcome: list[object] = []

    def send() -> None:
        try:
            outcome.append(client.send(REQUEST, may_send=lead.is_set))
        except Stopped:
            outcome.append("stopped")

    waiting = threading.Thread(target=send)
    waiting.start()
    time.sleep(0.3)  # it waits for the slot now
    lead.clear()  # the lease is lost while it waits
    limiter.release(throttled=False)
    waiting.join(10)
    assert outcome == ["stopped"] and vendor.state.requests == [] and limiter.out == 0


def test_a_vendor_that_does_not_answer_in_time_is_retried_then_given_up(vendor: VendorSimulator) -> None:
    vendor.state.faults = Faults(hang_s=1.5)  # beyond the client's timeout
    client = VendorClient(vendor.url, max_attempts=2, backoff_initial_s=0.01, backoff_max_s=0.02, timeout_s=0.5)
    outcome = client.send(REQUEST)
    assert (outcome.ok, outcome.reason_code, outcome.retryable, outcome.attempts) == (False, "VENDOR_UNAVAILABLE", True, 2)
    assert "timed out" in outcome.detail


def test_the_environments_proxy_is_not_used(vendor: VendorSimulator, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """libcurl would follow `http_proxy`; http.client, which coterm used before, never did."""
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert fast(vendor.url).send(REQUEST).ok


def test_a_kept_alive_connection_the_vendor_closed_is_opened_again(vendor: VendorSimulator) -> None:
    """One worker's calls share a connection; the vendor (here a proxy before it) closes it
    between two calls: the second call connects again and goes out once, in one attempt."""
    from tests.tcp_proxy import TcpProxy

    proxy = TcpProxy(vendor.server_address[:2])
    try:
        client = fast(f"http://127.0.0.1:{proxy.port}")
        assert client.send(REQUEST).ok
        proxy.cut()  # drops the kept-alive connection
        proxy.restore()
        outcome = client.send({**REQUEST, "operation_id": "op-2"})
        assert (outcome.ok, outcome.attempts) == (True, 1)
        assert [r["key"] for r in vendor.state.requests] == ["op-1", "op-2"]
    finally:
        proxy.stop()


def _self_signed(directory: str) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vendor.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = f"{directory}/vendor.pem", f"{directory}/vendor.key"
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def test_an_https_vendor_is_trusted_as_the_system_says(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """libcurl from the pycurl wheels looks for CA certificates where AlmaLinux keeps them; coterm
    gives it what Python's `ssl` trusts (SSL_CERT_FILE here): a vendor certified by it is called,
    one that is not is refused."""
    import ssl

    cert, key = _self_signed(str(tmp_path))
    sim = VendorSimulator()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    sim.socket = context.wrap_socket(sim.socket, server_side=True)
    sim.start()
    url = f"https://127.0.0.1:{sim.server_address[1]}"
    try:
        refused = fast(url, attempts=1).send(REQUEST)
        assert not refused.ok and "certificate" in refused.detail.lower(), refused.detail
        monkeypatch.setenv("SSL_CERT_FILE", cert)
        assert fast(url).send(REQUEST).ok
        assert [r["key"] for r in sim.state.requests] == ["op-1"]
    finally:
        sim.stop()


def test_a_vendor_answering_what_is_not_http_is_retried_then_given_up() -> None:
    """Something else listens at COTERM_VENDOR_URL and answers garbage: no status, retried."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    answered: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            answered.append(1)  # before the answer: the client may have read it and returned before a line after it runs
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        outcome = fast(f"http://127.0.0.1:{listener.getsockname()[1]}", attempts=2).send(REQUEST)
        assert (outcome.ok, outcome.reason_code, outcome.retryable, outcome.attempts) == (False, "VENDOR_UNAVAILABLE", True, 2)
        assert len(answered) == 2 and "no answer after 2 attempts" in outcome.detail
    finally:
        listener.close()
