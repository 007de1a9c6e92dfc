"""Who a caller is, and which routes name who may call them (deny by default)."""

import pytest
from fastapi import APIRouter
from fastapi_offline import FastAPIOffline
from pydantic import ValidationError

from processor.settings import Settings, SettingsError
from projections import auth
from projections.identity import Refused, Tenant, caller_for
from projections.staff import DEFAULT_ROLES, StaffFile


def test_tenant_roles_confine_and_never_fall_back_to_staff() -> None:
    pam = caller_for("pam", ["Partner Administrator"], "P1", None, DEFAULT_ROLES)
    assert pam.tenant == Tenant("partner", "P1") and pam.privileges == {"Usage-Based Migration"}
    viewer = caller_for("dan", ["Distributor Viewer"], None, "D1", DEFAULT_ROLES)
    assert viewer.tenant == Tenant("distributor", "D1") and viewer.privileges == frozenset()
    # A tenant role beside a staff role: the tenant's reach, never more.
    mixed = caller_for("eve", ["Account Administrator", "Partner Viewer"], "P1", None, DEFAULT_ROLES)
    assert mixed.tenant == Tenant("partner", "P1") and mixed.privileges == frozenset()
    for roles, partner, distributor in ((["Partner Administrator"], None, None),  # no partner_id
                                        (["Distributor Viewer"], "P1", None),  # the wrong id
                                        (["Partner Viewer", "Distributor Viewer"], "P1", "D1"),  # two tenants
                                        (["Some Other Role"], None, None), ([], None, None)):  # no coterm role
        with pytest.raises(Refused):
            caller_for("x", roles, partner, distributor, DEFAULT_ROLES)
    # A staff-file user may hold no role: provider staff without privileges, as before tenants.
    assert caller_for("bob", [], None, None, DEFAULT_ROLES, require_role=False).staff


@pytest.mark.parametrize(("user", "words"), [
    ({"roles": ["Partner Administrator"]}, "needs a partner_id"),
    ({"roles": ["Account Administrator"], "partner_id": "P1"}, "not 'Account Administrator'"),
    ({"roles": [], "distributor_id": "D1"}, "give them 'Distributor Administrator' or 'Distributor Viewer'"),
    ({"roles": ["Partner Viewer"], "partner_id": "P1", "distributor_id": "D1"}, "not both"),
])
def test_the_staff_file_refuses_a_user_whose_reach_is_unclear(user: dict, words: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError, match=words):
        StaffFile.model_validate({"users": [{"name": "u", "token": "t" * 16, **user}]})
    with pytest.raises(ValidationError, match="tenant's role"):
        StaffFile.model_validate({"roles": {"Partner Viewer": ["Partial Upgrade"]}, "users": []})


def test_a_route_nobody_is_named_for_stops_the_app() -> None:
    api = FastAPIOffline()
    router = APIRouter()

    @router.post("/api/new-thing")
    def new_thing() -> None:
        """A route someone forgot to add to ACCESS."""

    for name in auth.ACCESS:  # every route coterm has, as named
        verb, path = name.split(" ", 1)
        router.add_api_route(path, lambda: None, methods=[verb])
    api.include_router(router)
    with pytest.raises(auth.UnguardedRoute, match="POST /api/new-thing names nobody"):
        auth.check_every_route_named(api)
    stale = FastAPIOffline()
    with pytest.raises(auth.UnguardedRoute, match="which is no route"):
        auth.check_every_route_named(stale)


def test_an_issuer_needs_its_audience() -> None:
    with pytest.raises(SettingsError, match="COTERM_OIDC_ISSUER needs COTERM_OIDC_AUDIENCE"):
        Settings.from_env({"COTERM_OIDC_ISSUER": "https://sso.example.com/realms/coterm"})
    with pytest.raises(SettingsError, match="COTERM_OIDC_ISSUER='ftp://x'"):
        Settings.from_env({"COTERM_OIDC_ISSUER": "ftp://x", "COTERM_OIDC_AUDIENCE": "a"})
    assert Settings.from_env({"COTERM_OIDC_ISSUER": "https://sso.example.com/realms/coterm",
                              "COTERM_OIDC_AUDIENCE": "coterm-api"}).oidc_roles_claim == "roles"
