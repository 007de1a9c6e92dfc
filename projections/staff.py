"""Staff users, roles and API tokens for `coterm serve` actions (COTERM_STAFF_FILE).

    {"roles": {"Support": []},
     "users": [{"name": "alice", "token": "...", "roles": ["Account Administrator"]},
               {"name": "bob", "token_sha256": "<64 hex digits>", "roles": ["Support"]}]}

A user holds either the token itself or its SHA-256 (`coterm hash-token`): a file of hashes
leaks no credential. With a staff file, every `/api` call needs a staff user's token.

Privileges, each needed by some staff writes (reads need any staff user):
- "Partial Upgrade": place a partial upgrade (`POST /api/transfers`), cancel or retry operations;
- "Usage-Based Migration": request a migration, start or cancel a bulk migration;
- "Re-drive Dead Letters": publish a dead letter again;
- "Reconcile Seats": resolve or explain a seat drift reconciliation found.
The Account Administrator role holds all four by default (as in the provider's upgrade tool,
where it holds Partial Upgrade) unless the file gives that role its own list.

A user may belong to a tenant instead (CONTRACT.md section 6): `partner_id` with "Partner
Administrator" or "Partner Viewer", or `distributor_id` with "Distributor Administrator" or
"Distributor Viewer" (`projections/identity.py`).
"""

import hashlib
import hmac
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from projections.identity import DISTRIBUTOR_ROLES, MIGRATE, PARTNER_ROLES, TENANT_ROLES, Caller, caller_for

PARTIAL_UPGRADE = "Partial Upgrade"
REDRIVE = "Re-drive Dead Letters"
RECONCILE = "Reconcile Seats"
PRIVILEGES = (PARTIAL_UPGRADE, MIGRATE, REDRIVE, RECONCILE)
DEFAULT_ROLES = {"Account Administrator": list(PRIVILEGES)}


class StaffUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    token: str | None = Field(None, min_length=16)
    token_sha256: str | None = Field(None, pattern="^[0-9a-f]{64}$", description="hex SHA-256 of the token")
    roles: list[str] = []
    partner_id: str | None = Field(None, min_length=1, max_length=200)
    distributor_id: str | None = Field(None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _one_credential(self) -> "StaffUser":
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError(f"user {self.name!r} needs exactly one of token and token_sha256")
        return self

    @model_validator(mode="after")
    def _one_reach(self) -> "StaffUser":
        """A tenant's user holds its tenant's roles only, and the id they need: a mixture would
        leave it unclear whose customers they see."""
        kinds = [(kind, value, roles) for kind, value, roles in (("partner_id", self.partner_id, PARTNER_ROLES),
                                                                  ("distributor_id", self.distributor_id, DISTRIBUTOR_ROLES))
                 if value is not None or any(r in roles for r in self.roles)]
        if len(kinds) > 1:
            raise ValueError(f"user {self.name!r} belongs to a partner or a distributor, not both")
        for kind, value, roles in kinds:
            if value is None:
                raise ValueError(f"user {self.name!r} has the role {next(r for r in self.roles if r in roles)!r} "
                                 f"and needs a {kind}")
            others = [r for r in self.roles if r not in roles]
            if others or not self.roles:
                raise ValueError(f"user {self.name!r} has a {kind}: give them {' or '.join(repr(r) for r in roles)}"
                                 + (f", not {others[0]!r}" if others else ""))
        return self

    def holds(self, token: str, digest: str) -> bool:
        if self.token is not None:
            return hmac.compare_digest(self.token.encode(), token.encode())
        return hmac.compare_digest(str(self.token_sha256).encode(), digest.encode())


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class StaffFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roles: dict[str, list[str]] = {}
    users: list[StaffUser] = []

    @model_validator(mode="after")
    def _consistent(self) -> "StaffFile":
        """What pydantic's types cannot see: names and tokens that clash, roles and privileges
        misspelled (found here, not by a 403 later). No message repeats a token."""
        for role, privileges in self.roles.items():
            unknown = [p for p in privileges if p not in PRIVILEGES]
            if unknown:
                raise ValueError(f"role {role!r} grants unknown privilege {unknown[0]!r} (known: {', '.join(PRIVILEGES)})")
        clash = [role for role in self.roles if role in TENANT_ROLES]
        if clash:
            raise ValueError(f"role {clash[0]!r} is a tenant's role; it cannot be redefined")
        known = {**DEFAULT_ROLES, **self.roles, **dict.fromkeys(TENANT_ROLES, [])}
        names: set[str] = set()
        digests: dict[str, str] = {}
        for user in self.users:
            if user.name in names:
                raise ValueError(f"two users are named {user.name!r}")
            names.add(user.name)
            unknown = [r for r in user.roles if r not in known]
            if unknown:
                staff_roles = sorted(r for r in known if r not in TENANT_ROLES)
                raise ValueError(f"user {user.name!r} has unknown role {unknown[0]!r} (known: {', '.join(staff_roles)}); "
                                 f"a partner's or distributor's user holds one of {', '.join(TENANT_ROLES)}")
            digest = user.token_sha256 or hash_token(str(user.token))
            if digest in digests:
                raise ValueError(f"users {digests[digest]!r} and {user.name!r} have the same token")
            digests[digest] = user.name
        return self


class StaffError(ValueError):
    pass


class Staff:
    def __init__(self, config: StaffFile | None) -> None:
        self.config = config
        self.roles = {**DEFAULT_ROLES, **(config.roles if config else {})}

    @classmethod
    def load(cls, path: str | None) -> "Staff":
        if not path:
            return cls(None)
        try:
            return cls(StaffFile.model_validate(json.loads(Path(path).read_text())))
        except OSError as error:
            raise StaffError(f"COTERM_STAFF_FILE={path!r} cannot be read: {error.strerror}") from None
        except ValidationError as error:
            raise StaffError(f"COTERM_STAFF_FILE={path!r} is not a valid staff file: {first_problem(error)}") from None
        except ValueError as error:  # not JSON
            raise StaffError(f"COTERM_STAFF_FILE={path!r} is not JSON: {error}") from None

    @property
    def enabled(self) -> bool:
        return self.config is not None

    def user(self, token: str) -> StaffUser | None:
        digest = hash_token(token)
        found = None
        for user in self.config.users if self.config else []:
            if user.holds(token, digest) and found is None:
                found = user  # no early return: every user is compared, whoever matches
        return found

    def privileges(self, user: StaffUser) -> set[str]:
        return set(self.caller(user).privileges)

    def caller(self, user: StaffUser) -> Caller:
        return caller_for(user.name, user.roles, user.partner_id, user.distributor_id, self.roles, require_role=False)

    @property
    def known_roles(self) -> list[str]:
        return sorted({*self.roles, *TENANT_ROLES})


def first_problem(error: ValidationError) -> str:
    """One line naming where and what, never the value (it may be a token)."""
    first = error.errors(include_input=False, include_url=False)[0]
    where = ".".join(f"[{part}]" if isinstance(part, int) else str(part) for part in first["loc"]).replace(".[", "[")
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "string_too_short" and where.endswith("token"):
        message = "a token must be at least 16 characters"
    return f"{where}: {message}" if where else message
