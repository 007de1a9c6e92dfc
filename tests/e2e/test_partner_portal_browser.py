"""The partner's own portal in a real Chromium: a partner's and a distributor's administrator sign
in through the identity provider (Authorization Code with PKCE, from the page), land on their
customers, migrate one of their own through the migration window, and never see the others'.

Against the suite's provider (`tests/oidc_provider.py`) in `make test`, and against Keycloak in
`make test-keycloak` (marked `keycloak`: its start costs ~15 s of both cores)."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pytest

from projections.oidc import Issuer, OidcConfig
from projections.staff import Staff
from tests.harness import Scenario, serving_live
from tests.http_server import call
from tests.oidc_provider import AUDIENCE, CLIENT_ID, Provider, running
from tests.waiting import wait_for

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)  # the subscriptions end 2027-01-04: in their renewal window
CUSTOMERS = {"cu-acme-pa": ("P-ALPHA", None), "cu-bolt-pa": ("P-ALPHA", "D-NORTH"),
             "cu-cora-pb": ("P-BRAVO", None), "cu-dune-pb": ("P-BRAVO", "D-NORTH")}
USERS = {"pam": {"roles": ["Partner Administrator"], "partner_id": "P-ALPHA"},
         "dora": {"roles": ["Distributor Administrator"], "distributor_id": "D-NORTH"},
         "sam": {"roles": ["Account Administrator"]}}


@dataclass
class Idp:
    """The identity provider the test signs in through: its issuer, where roles are, and how to
    get a provider staff member's token without the browser."""
    issuer: str
    roles_claim: str
    staff_token: Callable[[], str]
    prepare: Callable[[str], None]  # given the dashboard's URL (Keycloak: make the realm for it)
    provider: Provider | None = None


@pytest.fixture(params=["tests-provider", pytest.param("keycloak", marks=pytest.mark.keycloak)])
def idp(request: pytest.FixtureRequest) -> Iterator[Idp]:
    if request.param == "tests-provider":
        with running(USERS, token_lifetime_s=65) as provider:  # the page renews it after 10 s
            yield Idp(provider.issuer, "roles", lambda: provider.mint("sam"), lambda _: None, provider)
        return
    kc = request.getfixturevalue("keycloak_server")
    realm = "coterm-browser"
    yield Idp(f"{kc.url}/realms/{realm}", "realm_access.roles", lambda: kc.password_grant("sam")["access_token"],
              lambda url: kc.make_realm(realm, url + "/", USERS))


@pytest.fixture
def live(sqlite_scenario: Scenario, idp: Idp) -> Iterator[tuple[Scenario, str, Idp]]:
    s = sqlite_scenario
    s.send("catalog.product_defined", {"product_id": "p1", "name": "Elements EPP", "supports_usage_based": True,
                                       "in_usage_bundle": True})
    for customer, (partner, distributor) in CUSTOMERS.items():
        s.send("customer.registered", {"customer_id": customer, "partner_id": partner, "name": f"Name of {customer}",
                                       "channel": "two_tier" if distributor else "direct",
                                       "distributor_id": distributor, "data_complete": True})
        s.send("subscription.purchased", {"subscription_id": f"{customer}-s1", "customer_id": customer, "product_id": "p1",
                                          "plan_id": "plan-p1", "billing_model": "annual", "management": "partner_managed",
                                          "seats": 10, "term_months": 12, "start_date": "2026-01-05",
                                          "end_date": "2027-01-04", "subscription_key": f"KEY-{customer}"},
               occurred_at="2026-01-05T09:00:00Z")
    # The issuer's documents are read when the first token arrives: the realm may follow the port.
    issuer = Issuer(OidcConfig(issuer=idp.issuer, audience=AUDIENCE, client_id=CLIENT_ID, roles_claim=idp.roles_claim))
    with serving_live(s, Staff(None), clock=lambda: NOW, issuer=issuer) as url:
        idp.prepare(url)
        wait_for(lambda: call(f"{url}/api/customers/cu-dune-pb", token=idp.staff_token())[0] == 200, 60,
                 "the seeded world")
        yield s, url, idp


def _sign_in(browser: Any, url: str, user: str, tenant: str) -> None:
    """Through the identity provider's own page, as a person does."""
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(url + "/")
    wait_for(lambda: browser.find_element(By.ID, "login").is_displayed(), what="the sign-in dialog")
    browser.find_element(By.ID, "login-oidc").click()
    wait_for(lambda: browser.find_elements(By.ID, "username"), what="the identity provider's sign-in page")
    browser.find_element(By.ID, "username").send_keys(user)
    browser.find_element(By.ID, "password").send_keys("secret-" + user)
    browser.find_element(By.ID, "kc-login").click()
    wait_for(lambda: browser.find_element(By.ID, "who").text == f"signed in as {user} ({tenant})", 30, "who is signed in")
    assert "code=" not in browser.current_url  # the code never stays in the address bar


def _customers_listed(browser: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [r.get_attribute("data-customer") for r in browser.find_elements(By.CSS_SELECTOR, "#customers tbody tr[data-customer]")]


def _migrate(browser: Any, url: str, customer: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{url}/#/customer/{customer}")
    wait_for(lambda: browser.find_element(By.ID, "c-migrate").is_enabled(), what="the migrate button")
    browser.find_element(By.ID, "c-migrate").click()
    wait_for(lambda: browser.find_element(By.ID, "mig-confirm").is_enabled(), what="the migration window")
    browser.find_element(By.ID, "mig-confirm").click()
    wait_for(lambda: "Migrated" in browser.find_element(By.ID, "mig-result").text, 60, "the migration's result")
    assert f"KEY-{customer}" in browser.find_element(By.ID, "mig-outcome").text  # the key is kept
    browser.find_element(By.ID, "mig-close").click()


def test_a_partner_and_a_distributor_sign_in_and_migrate_their_own(  # type: ignore[no-untyped-def]
        browser, live: tuple[Scenario, str, Idp]) -> None:
    from selenium.webdriver.common.by import By

    s, url, idp = live
    _sign_in(browser, url, "pam", "partner P-ALPHA")
    # The partner lands on its customers, without the staff pages.
    wait_for(lambda: sorted(_customers_listed(browser)) == ["cu-acme-pa", "cu-bolt-pa"], what="the partner's customers")
    assert browser.current_url.endswith("#/customer")
    assert not browser.find_element(By.ID, "nav-dl").is_displayed()
    assert "cu-cora-pb" not in browser.page_source and "P-BRAVO" not in browser.page_source
    _migrate(browser, url, "cu-acme-pa")
    browser.get(f"{url}/#/customer/cu-cora-pb")  # another partner's customer: as unknown
    wait_for(lambda: "is unknown" in browser.find_element(By.ID, "cust").text, what="another partner's customer refused")
    # Signing out forgets the token: the page asks again.
    browser.get(url + "/#/customer")
    wait_for(lambda: browser.find_element(By.ID, "sign-out").is_displayed(), what="the sign-out link")
    browser.find_element(By.ID, "sign-out").click()
    wait_for(lambda: browser.find_element(By.ID, "login").is_displayed(), what="the sign-in dialog after signing out")

    _sign_in(browser, url, "dora", "distributor D-NORTH")
    # The distributor sees its resellers' customers, grouped by reseller.
    wait_for(lambda: sorted(_customers_listed(browser)) == ["cu-bolt-pa", "cu-dune-pb"], what="the distributor's customers")
    resellers = [r.get_attribute("data-reseller") for r in browser.find_elements(By.CSS_SELECTOR, "#customers tr.reseller")]
    assert resellers == ["P-ALPHA", "P-BRAVO"]
    assert "cu-acme-pa" not in browser.page_source and "cu-cora-pb" not in browser.page_source
    _migrate(browser, url, "cu-dune-pb")

    staff = idp.staff_token()
    for customer, by in (("cu-acme-pa", "pam"), ("cu-dune-pb", "dora")):
        [migration] = call(f"{url}/api/customers/{customer}", token=staff)[1]["migrations"]
        assert migration["decisions"][-1]["requested_by"] == by
    for customer in ("cu-bolt-pa", "cu-cora-pb"):
        assert call(f"{url}/api/customers/{customer}", token=staff)[1]["migrations"] == []
    if idp.provider is not None:  # the page exchanged its code with a PKCE verifier, as a public client: no secret
        requests = idp.provider.token_requests
        grants = [r for r in requests if r.get("grant_type") == "authorization_code"]
        assert len(grants) == 2 and all(r.get("code_verifier") and "client_secret" not in r for r in grants)
        # Before the token expires, the page renews it with the refresh token, and goes on reading.
        wait_for(lambda: any(r.get("grant_type") == "refresh_token" for r in requests), 30, "the token renewed")
        browser.get(url + "/#/bulk")
        browser.get(url + "/#/customer")
        wait_for(lambda: sorted(_customers_listed(browser)) == ["cu-bolt-pa", "cu-dune-pb"], what="reading on")
