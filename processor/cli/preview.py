"""`coterm preview transfer|migration`: what an order would get on a date, recording nothing."""

import argparse
import json
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Any

from processor.settings import SettingsError

# Each command imports what it needs inside itself: the store, Kafka and the web stack cost
# about 0.7 s to import, and `coterm --help`, `--version` and a mistyped command answer in 0.15 s.


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def _seats(text: str) -> int:
    from contracts.fields import MAX_COUNT

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and {MAX_COUNT:,}")
    return value


def add_parser(sub: Any) -> None:
    preview = sub.add_parser("preview", help="the decision a transfer or migration would get on a date, "
                             "recording nothing")
    kinds = preview.add_subparsers(dest="preview_kind", required=True, metavar="KIND")

    transfer = kinds.add_parser("transfer", help="a partial seat transfer (both halves on that date)")
    transfer.add_argument("--source", required=True, metavar="SUBSCRIPTION_ID")
    transfer.add_argument("--seats", required=True, type=_seats, help="seats to move")
    target = transfer.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-plan", metavar="PLAN_ID", help="into a new co-termed subscription of this plan")
    target.add_argument("--target-subscription", metavar="SUBSCRIPTION_ID", help="into this existing subscription")
    transfer.add_argument("--term-months", type=_seats, help="the new plan's term (default: the source's)")
    transfer.add_argument("--product", metavar="PRODUCT_ID", help="the new plan's product (default: the source's)")
    _common(transfer)
    transfer.set_defaults(func=cmd_preview_transfer)

    migration = kinds.add_parser("migration", help="a migration to usage-based billing, per product")
    migration.add_argument("customer", metavar="CUSTOMER_ID")
    migration.add_argument("products", nargs="+", metavar="PRODUCT_ID")
    _common(migration)
    migration.set_defaults(func=cmd_preview_migration)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--on", type=_day, metavar="YYYY-MM-DD",
                        help="the business date to decide on (default: the latest one coterm applied)")
    parser.add_argument("--json", action="store_true", help="the preview as one JSON document")


def _with_store(action: Callable[[Any, Any], dict[str, Any]], on: date | None) -> dict[str, Any]:
    """Run a preview on a unit of work over the store (never committed: nothing is recorded)."""
    from aggregates import previews
    from processor.cli.audit import _open_existing_store

    app = _open_existing_store()
    try:
        uow = app.unit_of_work()
        day = on or previews.business_date(uow) or datetime.now(timezone.utc).date()
        return action(uow, day)
    finally:
        app.close()


def cmd_preview_transfer(args: argparse.Namespace) -> int:
    if args.target_subscription and (args.term_months or args.product):
        raise SettingsError("--term-months and --product describe a new plan: use them with --target-plan")
    if args.target_plan:
        target: dict[str, Any] = {"kind": "new_subscription", "plan_id": args.target_plan, "term_months": args.term_months}
        if args.product:
            target["product_id"] = args.product
    else:
        target = {"kind": "existing_subscription", "subscription_id": args.target_subscription}
    from aggregates.previews import preview_transfer

    report = _with_store(lambda uow, on: preview_transfer(uow, args.source, args.seats, target, on), args.on)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    source = report["source"]
    into = (f"a new subscription of plan {target['plan_id']}" if args.target_plan
            else f"subscription {args.target_subscription}")
    held = f" (customer {source['customer_id']}, {source['seats']} seats)" if source["customer_id"] else ""
    print(f"transfer of {args.seats} seat(s) from {args.source}{held} into {into}, on {report['on']}:")
    _print_verdict(report, "  ")
    if report.get("vendor_request"):  # what the one vendor call for the pair would carry
        print("  the vendor call it would make (POST /v1/transfers, body):")
        for line in json.dumps(report["vendor_request"], indent=2, sort_keys=True).splitlines():
            print("    " + line)
    return 0


def cmd_preview_migration(args: argparse.Namespace) -> int:
    from aggregates.previews import preview_migration

    report = _with_store(lambda uow, on: preview_migration(uow, args.customer, args.products, on), args.on)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    print(f"migration of customer {args.customer} to usage-based billing, on {report['on']}: "
          f"{report['decision'].upper()}")
    for product in report["products"]:
        print(f"  {product['product_id']}:")
        _print_verdict(product, "    ")
    return 0


def _print_verdict(verdict: dict[str, Any], indent: str) -> None:
    if verdict["decision"] == "accepted":
        keys = ", ".join(f"{m['subscription_id']} (key {m['subscription_key']})" for m in verdict.get("migrating", []))
        print(f"{indent}ACCEPTED" + (f": {keys} would migrate, keeping their keys" if keys else ""))
        return
    print(f"{indent}REJECTED {verdict['reason_code']}: {verdict['detail']}")
    for other in verdict["refusals"][1:]:
        print(f"{indent}  also {other['reason_code']}: {other['detail']}")
    when = verdict["eligible_from"]
    print(f"{indent}would pass from {when}" if when else f"{indent}no date makes it pass: the order must change")
