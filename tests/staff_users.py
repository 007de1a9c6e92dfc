"""The staff file most API tests use: alice (Account Administrator, every privilege) and bob
(Support: reads only)."""

import json
from pathlib import Path

from projections.staff import Staff

ADMIN, SUPPORT = "admin-token-0123456789", "support-token-0123456789"


def admin_and_support(folder: Path) -> Staff:
    path = folder / "staff.json"
    path.write_text(json.dumps({"roles": {"Support": []}, "users": [
        {"name": "alice", "token": ADMIN, "roles": ["Account Administrator"]},
        {"name": "bob", "token": SUPPORT, "roles": ["Support"]}]}))
    return Staff.load(str(path))
