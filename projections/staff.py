"""Staff users, roles and API tokens for `coterm serve` actions (COTERM_STAFF_FILE).

    {"roles": {"Support": []},
     "users": [{"name": "alice", "token": "...", "roles": ["Account Administrator"]}]}

The Partial Upgrade privilege lets a user cancel or retry operations. The Account
Administrator role holds it by default unless the file gives that role its own list.
"""

import hmac
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PARTIAL_UPGRADE = "Partial Upgrade"
DEFAULT_ROLES = {"Account Administrator": [PARTIAL_UPGRADE]}


class StaffUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    token: str = Field(min_length=16)
    roles: list[str] = []


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
        for user in self.config.users if self.config else []:
            if hmac.compare_digest(user.token.encode(), token.encode()):
                return user
        return None

    def privileges(self, user: StaffUser) -> set[str]:
        return {p for role in user.roles for p in self.roles.get(role, [])}
