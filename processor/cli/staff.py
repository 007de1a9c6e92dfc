"""`coterm staff add` and `coterm hash-token`: staff users for `coterm serve`, whose file holds
token hashes only, so it leaks no credential."""

import argparse
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from processor.settings import SettingsError

# Each command imports what it needs inside itself: the store, Kafka and the web stack cost
# about 0.7 s to import, and `coterm --help`, `--version` and a mistyped command answer in 0.15 s.


def cmd_staff_add(args: argparse.Namespace) -> int:
    """A new user with a fresh token: the token goes to standard output once, its hash to the file."""
    from pydantic import ValidationError

    from projections.identity import TENANT_ROLES
    from projections.staff import Staff, StaffError, StaffFile, first_problem, hash_token

    path = args.file or os.environ.get("COTERM_STAFF_FILE", "").strip()
    if not path:
        raise SettingsError("coterm staff add needs --file or COTERM_STAFF_FILE: the staff file to write")
    document: dict[str, Any] = {"roles": {}, "users": []}
    staff = Staff(None)
    if Path(path).exists():
        try:
            staff = Staff.load(path)  # the whole file checked first: never add to a file serve would refuse
        except StaffError as error:
            raise SettingsError(str(error)) from None
        document = json.loads(Path(path).read_text())
    if any(user.get("name") == args.name for user in document.get("users", [])):
        if args.if_absent:
            print(f"coterm: {path} already has a user {args.name!r}; nothing changed", file=sys.stderr)
            return 0
        raise SettingsError(f"{path} already has a user {args.name!r} (a new token for it: remove it first)")
    unknown = [role for role in args.role if role not in staff.known_roles]
    if unknown:
        raise SettingsError(f"--role {unknown[0]!r} is not a role of {path} (known: {', '.join(sorted(staff.roles))}; "
                            f"with --partner or --distributor: {', '.join(TENANT_ROLES)})")
    token = secrets.token_urlsafe(24)
    user: dict[str, Any] = {"name": args.name, "token_sha256": hash_token(token), "roles": args.role}
    if args.partner:
        user["partner_id"] = args.partner
    if args.distributor:
        user["distributor_id"] = args.distributor
    document.setdefault("users", []).append(user)
    try:
        StaffFile.model_validate(document)  # the user as serve will read it: a tenant role needs its id, and so on
    except ValidationError as error:
        raise SettingsError(f"--partner/--distributor/--role: {first_problem(error)}") from None
    _write(Path(path), document)
    print(f"coterm: added {args.name!r} ({', '.join(args.role) or 'no role'}) to {path}; its token follows, shown "
          "this once (the file holds only its SHA-256)", file=sys.stderr)
    print(token, flush=True)
    return 0


def _write(path: Path, document: dict[str, Any]) -> None:
    """Whole or not at all: a `coterm serve` reading the file at that moment sees the old or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".new")
    partial.write_text(json.dumps(document, indent=2) + "\n")
    partial.replace(path)


def cmd_hash_token(args: argparse.Namespace) -> int:
    """The SHA-256 a staff file may hold instead of the token (read from stdin: not in shell history)."""
    from projections.staff import hash_token

    token = sys.stdin.readline().strip()
    if len(token) < 16:
        raise SettingsError("a staff token is at least 16 characters; give it on standard input")
    print(hash_token(token))
    return 0


def add_parser(sub: Any) -> None:
    staff = sub.add_parser("staff", help="staff users of the dashboard and API (COTERM_STAFF_FILE)")
    verbs = staff.add_subparsers(dest="verb", required=True, metavar="VERB")
    add = verbs.add_parser("add", help="add a user with a fresh token: the token is printed once, the file "
                           "keeps only its hash")
    add.add_argument("name")
    add.add_argument("--role", action="append", default=[], metavar="ROLE",
                     help='e.g. "Account Administrator" (all privileges); repeat for several')
    tenant = add.add_mutually_exclusive_group()
    tenant.add_argument("--partner", metavar="PARTNER_ID", help='a partner\'s user: with --role "Partner Administrator" '
                        'or "Partner Viewer"; sees and migrates only that partner\'s customers')
    tenant.add_argument("--distributor", metavar="DISTRIBUTOR_ID", help='a distributor\'s user: with --role '
                        '"Distributor Administrator" or "Distributor Viewer"')
    add.add_argument("--file", metavar="PATH", help="the staff file (default: COTERM_STAFF_FILE); created if missing")
    add.add_argument("--if-absent", action="store_true", help="a user of that name already there is no error "
                     "(nothing changes): for a stack's first-start step")
    add.set_defaults(func=cmd_staff_add)

    token = sub.add_parser("hash-token", help="print the SHA-256 of a staff token read from standard input, "
                           "for a staff file that holds no credential")
    token.set_defaults(func=cmd_hash_token)
