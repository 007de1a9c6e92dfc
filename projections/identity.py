"""Who is calling: a name, the privileges their roles grant, and the tenant they are confined to.

Two sources make a `Caller`: a staff-file user (`staff.py`) and an OpenID Connect token
(`oidc.py`); both go through `caller_for` so the rules below hold for both (CONTRACT.md
section 6). Provider staff (no tenant) see every tenant. A partner or distributor role
confines the caller to the customers of its `partner_id` / `distributor_id`; such a role
without its id is refused, never read as provider staff.
"""

from dataclasses import dataclass
from typing import Literal

PARTNER_ADMIN = "Partner Administrator"
PARTNER_VIEWER = "Partner Viewer"
DISTRIBUTOR_ADMIN = "Distributor Administrator"
DISTRIBUTOR_VIEWER = "Distributor Viewer"
PARTNER_ROLES = (PARTNER_ADMIN, PARTNER_VIEWER)
DISTRIBUTOR_ROLES = (DISTRIBUTOR_ADMIN, DISTRIBUTOR_VIEWER)
TENANT_ROLES = (*PARTNER_ROLES, *DISTRIBUTOR_ROLES)
MIGRATE = "Usage-Based Migration"  # the one privilege a tenant's administrator holds (staff.py names all)


@dataclass(frozen=True)
class Tenant:
    """The customers a caller is confined to: those of a partner, or those a distributor serves."""
    kind: Literal["partner", "distributor"]
    id: str

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"


@dataclass(frozen=True)
class Caller:
    name: str
    roles: tuple[str, ...]
    privileges: frozenset[str]
    tenant: Tenant | None  # None: provider staff, every tenant

    @property
    def staff(self) -> bool:
        return self.tenant is None


class Refused(Exception):
    """An authenticated caller who may not use coterm as they are (403): the reason says why."""


def caller_for(name: str, roles: list[str], partner_id: str | None, distributor_id: str | None,
               staff_roles: dict[str, list[str]], require_role: bool = True) -> Caller:
    """The caller a user's roles and tenant ids make. `staff_roles`: the provider staff roles and
    their privileges (the staff file's, with Account Administrator's default). `require_role`
    False: a user without any role is provider staff without privileges (a staff-file user: the
    operator listed them); a token needs a role, since its issuer signs in far more people."""
    held = tuple(dict.fromkeys(r for r in roles if isinstance(r, str)))
    partner = [r for r in held if r in PARTNER_ROLES]
    distributor = [r for r in held if r in DISTRIBUTOR_ROLES]
    if partner and distributor:
        raise Refused("a user holds the roles of one tenant: a partner's or a distributor's, not both")
    if partner or distributor:
        kind, claim, value = ("partner", "partner_id", partner_id) if partner else ("distributor", "distributor_id", distributor_id)
        if not value:
            raise Refused(f"the role {(partner or distributor)[0]!r} needs a {claim}, and none was given")
        admin = PARTNER_ADMIN in held or DISTRIBUTOR_ADMIN in held
        # Tenant roles win over any provider staff role in the same token: never more reach than the tenant's.
        return Caller(name, held, frozenset({MIGRATE} if admin else set()), Tenant(kind, str(value)))
    known = [r for r in held if r in staff_roles]
    if not known and require_role:
        raise Refused("the user holds no coterm role")
    return Caller(name, held, frozenset(p for r in known for p in staff_roles[r]), None)
