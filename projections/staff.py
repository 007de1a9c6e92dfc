"""Staff users, roles and API tokens for `coterm serve` actions (COTERM_STAFF_FILE).

    {"roles": {"Support": []},
     "users": [{"name": "alice", "token": "...", "roles": ["Account Administrator"]},
               {"name": "bob", "token_sha256": "<64 hex digits>", "roles": ["Support"]}]}

A user holds either the token itself or its SHA-256 (`coterm hash-token`): a file of hashes
leaks no credential. With a staff file, every `/api` call needs a staff user's token.

Privileges, each needed by some staff writes (reads need any staff user):
- "Partial Upgrade": place a partial upgrade (`POST /api/transfers`), cancel or retry operations;
- "Usage-Based Migration": request a migration, start or cancel a bulk migration;
- "Re-drive Dead Letters": publish a dead letter again.
The Account Administrator role holds all three by default (as in the provider's upgrade tool,
where it holds Partial Upgrade) unless the file gives that role its own list.
"""

import hashlib
import hmac
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PARTIAL_UPGRADE = "Partial Upgrade"
MIGRATE = "Usage-Based Migration"
REDRIVE = "Re-drive Dead Letters"
PRIVILEGES = (PARTIAL_UPGRADE, MIGRATE, REDRIVE)
DEFAULT_ROLES = {"Account Administrator": list(PRIVILEGES)}


class StaffUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    token: str | None = Field(None, min_length=16)
    token_sha256: str | None = Field(None, pattern="^[0-9a-f]{64}$", description="hex SHA-256 of the token")
    roles: list[str] = []

    @model_validator(mode="after")
    def _one_credential(self) -> "StaffUser":
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError(f"user {self.name!r} needs exactly one of token and token_sha256")
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
        known = {**DEFAULT_ROLES, **self.roles}
        names: set[str] = set()
        digests: dict[str, str] = {}
        for user in self.users:
            if user.name in names:
                raise ValueError(f"two users are named {user.name!r}")
            names.add(user.name)
            unknown = [r for r in user.roles if r not in known]
            if unknown:
                raise ValueError(f"user {user.name!r} has unknown role {unknown[0]!r} (known: {', '.join(sorted(known))})")
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
            raise StaffError(f"COTERM_STAFF_FILE={path!r} is not a valid staff file: {_first_problem(error)}") from None
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
        return {p for role in user.roles for p in self.roles.get(role, [])}


def _first_problem(error: ValidationError) -> str:
    """One line naming where and what, never the value (it may be a token)."""
    first = error.errors(include_input=False, include_url=False)[0]
    where = ".".join(f"[{part}]" if isinstance(part, int) else str(part) for part in first["loc"]).replace(".[", "[")
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "string_too_short" and where.endswith("token"):
        message = "a token must be at least 16 characters"
    return f"{where}: {message}" if where else message
