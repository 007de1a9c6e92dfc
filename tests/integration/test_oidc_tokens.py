"""Token attacks on `/api`, against a real OpenID Connect provider over HTTP: each forged,
misdirected or stale token is 401 with a reason that names the check only, and places nothing."""

import base64
import hashlib
import hmac
import json
import math
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from joserfc.jwk import RSAKey

from processor.orders_out import KafkaOrders
from projections.oidc import Issuer, OidcConfig
from projections.staff import Staff
from tests import tenants
from tests.harness import Scenario
from tests.http_server import call, serving
from tests.integration.test_tenants import NOW, placed
from tests.oidc_provider import AUDIENCE, Provider, running


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value).encode())


CHECK_NAMED = {"expired": "expired", "wrong aud": "audience", "wrong iss": "another issuer",
               "not yet valid": "not valid yet", "tampered payload": "signature", "unknown kid": "no signing key",
               "alg none": "algorithm", "HS256 signed with the issuer's public key": "algorithm"}


@pytest.fixture
def provider() -> Iterator[Provider]:
    with running(tenants.USERS) as p:
        yield p


@pytest.fixture
def live(sqlite_scenario: Scenario, provider: Provider) -> Iterator[tuple[str, Issuer, Scenario]]:
    app = sqlite_scenario.open_store()
    tenants.build(app)
    orders = KafkaOrders(sqlite_scenario.settings)
    issuer = Issuer(OidcConfig(issuer=provider.issuer, audience=AUDIENCE))
    with serving(app, Staff(None), orders=orders, clock=lambda: NOW, issuer=issuer) as url:
        yield url, issuer, sqlite_scenario
    orders.close()
    app.close()


def attacks(provider: Provider) -> dict[str, str]:
    good = provider.mint("sam")
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    now = int(time.time())
    public_pem = provider.keys[0].as_pem(private=False)
    hs_header = _segment({"alg": "HS256", "typ": "JWT", "kid": provider.keys[0].kid})
    hs_signature = _b64(hmac.new(public_pem, f"{hs_header}.{payload}".encode(), hashlib.sha256).digest())
    stranger_key = RSAKey.generate_key(2048, parameters={"kid": provider.keys[0].kid, "alg": "RS256"})
    with running(tenants.USERS) as second:
        from_second_issuer = second.mint("sam")
    return {
        "alg none": f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "HS256 signed with the issuer's public key": f"{hs_header}.{payload}.{hs_signature}",
        "wrong iss": provider.mint("sam", iss="https://login.evil.example/realms/coterm"),
        "wrong aud": provider.mint("sam", aud="another-app"),
        "expired": provider.mint("sam", iat=now - 7200, nbf=now - 7200, exp=now - 3600),
        "not yet valid": provider.mint("sam", nbf=now + 3600, exp=now + 7200),
        "expired a minute ago (past the leeway)": provider.mint("sam", iat=now - 400, nbf=now - 400, exp=now - 60),
        "valid in a minute (past the leeway)": provider.mint("sam", nbf=now + 60, exp=now + 600),
        "no exp": provider.mint("sam", exp=None),
        "unknown kid": provider.mint("sam", key=RSAKey.generate_key(2048, parameters={"kid": "key-404", "alg": "RS256"})),
        "tampered payload": f"{header}.{_segment({**claims, 'roles': ['Account Administrator'], 'partner_id': None})}.{signature}",
        "tampered to another partner": ".".join([header, _segment({**claims, "preferred_username": "pam",
                                                                    "roles": ["Partner Administrator"], "partner_id": "P-BRAVO"}), signature]),
        "a second issuer with the same claims": from_second_issuer,
        "a second issuer's key under the first's kid and iss": provider.mint("sam", key=stranger_key),
        "not a JWT": "not-a-token-at-all-0123456789",
    }


@pytest.mark.integration
def test_every_token_attack_is_401_and_places_nothing(live: tuple[str, Issuer, Scenario], provider: Provider) -> None:
    api, _, world = live
    assert call(f"{api}/api/customers", token=provider.mint("sam"))[0] == 200  # the genuine token passes
    for name, token in attacks(provider).items():
        status, body = call(f"{api}/api/customers", token=token)
        assert (status, body["error"]) == (401, "UNAUTHENTICATED"), name
        assert "secret" not in body["detail"] and token[:20] not in body["detail"], name  # names the check only
        assert CHECK_NAMED.get(name, "") in body["detail"], (name, body["detail"])
        status, _ = call(f"{api}/api/migrations", "POST", {"customer_id": "cu-acme-pa", "product_ids": ["prod-e3"]},
                         token=token, key=f"attack-{name}")
        assert status == 401, name
    assert placed(world) == []


@pytest.mark.integration
def test_rotated_keys_are_fetched_once_and_made_up_kids_cannot_flood_the_issuer(live: tuple[str, Issuer, Scenario],
                                                                                provider: Provider) -> None:
    api, issuer, _ = live
    assert call(f"{api}/api/me", token=provider.mint("sam"))[0] == 200
    fetched = provider.jwks_fetches
    new_key = provider.rotate()
    assert call(f"{api}/api/me", token=provider.mint("sam", key=new_key))[0] == 200  # the new key, fetched once
    assert provider.jwks_fetches == fetched + 1
    assert call(f"{api}/api/me", token=provider.mint("sam", key=new_key))[0] == 200  # and kept
    assert provider.jwks_fetches == fetched + 1
    started, before = time.monotonic(), provider.jwks_fetches
    for n in range(5):
        made_up = RSAKey.generate_key(2048, parameters={"kid": f"made-up-{n}", "alg": "RS256"})
        assert call(f"{api}/api/me", token=provider.mint("sam", key=made_up))[0] == 401
    elapsed = time.monotonic() - started
    # At most one refetch per interval, however many made-up key ids arrive.
    assert provider.jwks_fetches - before <= 1 + math.ceil(elapsed / issuer.config.refetch_interval_s)


@pytest.mark.integration
def test_an_unreachable_issuer_is_503_not_a_pass(sqlite_scenario: Scenario) -> None:
    app = sqlite_scenario.open_store()
    issuer = Issuer(OidcConfig(issuer="http://127.0.0.1:9/realms/none", audience=AUDIENCE, fetch_timeout_s=1))
    try:
        with serving(app, Staff(None), issuer=issuer) as url:
            token = f"{_segment({'alg': 'RS256', 'kid': 'key-1'})}.{_segment({'sub': 'x'})}.{_b64(b'signature')}"
            status, body = call(f"{url}/api/customers", token=token)
            assert (status, body["error"]) == (503, "IDENTITY_PROVIDER_UNAVAILABLE")
            assert call(f"{url}/api/customers")[0] == 401
    finally:
        app.close()


@pytest.mark.keycloak
def test_keycloak_tokens_are_read_and_forged_ones_refused(sqlite_scenario: Scenario, keycloak_server: Any) -> None:
    """The same checks against Keycloak itself, set up as the README says (realm roles in
    `realm_access.roles`, an audience mapper, user attributes for the tenant)."""
    kc = keycloak_server
    kc.make_realm("coterm-tokens", "http://127.0.0.1/", tenants.USERS)
    kc.make_realm("coterm-elsewhere", "http://127.0.0.1/", tenants.USERS)  # a second issuer, the same users and claims
    app = sqlite_scenario.open_store()
    tenants.build(app)
    issuer = Issuer(OidcConfig(issuer=f"{kc.url}/realms/coterm-tokens", audience=AUDIENCE, roles_claim="realm_access.roles"))
    try:
        with serving(app, Staff(None), issuer=issuer) as url:
            pam = kc.password_grant("pam", realm="coterm-tokens")["access_token"]
            status, me = call(f"{url}/api/me", token=pam)
            assert status == 200 and me["tenant"] == {"kind": "partner", "id": "P-ALPHA"}, me
            assert {c["customer_id"] for c in call(f"{url}/api/customers", token=pam)[1]["items"]} == tenants.own_customers("pam")
            staff = kc.password_grant("sam", realm="coterm-tokens")["access_token"]
            assert call(f"{url}/api/deadletters", token=staff)[0] == 200
            assert call(f"{url}/api/customers", token=kc.password_grant("nobody", realm="coterm-tokens")["access_token"])[0] == 403
            header, payload, signature = pam.split(".")
            claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
            forged = {
                "a second issuer with the same claims": kc.password_grant("pam", realm="coterm-elsewhere")["access_token"],
                "another application's token (audience)": kc.password_grant("pam", "other-app", realm="coterm-tokens")["access_token"],
                "tampered payload": f"{header}.{_segment({**claims, 'partner_id': 'P-BRAVO'})}.{signature}",
                "alg none": f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
            }
            jwks = json.loads(urllib.request.urlopen(f"{issuer.config.issuer}/protocol/openid-connect/certs").read())
            rsa = next(k for k in jwks["keys"] if k["kty"] == "RSA" and k.get("use") == "sig")
            public_pem = RSAKey.import_key(rsa).as_pem(private=False)
            hs_header = _segment({"alg": "HS256", "typ": "JWT", "kid": rsa["kid"]})
            forged["HS256 signed with the issuer's public key"] = (
                f"{hs_header}.{payload}.{_b64(hmac.new(public_pem, f'{hs_header}.{payload}'.encode(), hashlib.sha256).digest())}")
            for name, token in forged.items():
                status, body = call(f"{url}/api/customers", token=token)
                assert (status, body["error"]) == (401, "UNAUTHENTICATED"), name
    finally:
        app.close()
