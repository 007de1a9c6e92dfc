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
        except (ValueError, ValidationError) as error:
            raise StaffError(f"COTERM_STAFF_FILE={path!r} is not a valid staff file: {error}") from None

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
