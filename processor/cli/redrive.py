"""`coterm redrive`: dead letters as work items (see `aggregates/redrive.py`)."""

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from processor.settings import Settings, SettingsError

# Each command imports what it needs inside itself: the store, Kafka and the web stack cost
# about 0.7 s to import, and `coterm --help`, `--version` and a mistyped command answer in 0.15 s.


def cmd_redrive(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from aggregates.redrive import redrive
    from processor.cli.audit import _open_existing_store
    from projections.projection import Projection
    from projections.queries import Queries

    settings = Settings.from_env()
    if not (args.id or args.reason or args.since):
        raise SettingsError("choose dead letters with --id, --reason or --since (and --until)")
    corrected = _corrected(args.message) if args.message else None
    if corrected is not None and len(args.id or []) != 1:
        raise SettingsError("--message corrects one dead letter: give exactly one --id with it")
    for given in args.id or []:
        if not re.fullmatch(r"[0-9a-f]{32}", given):
            raise SettingsError(f"--id {given!r}: a dead letter id is 32 hex digits (GET /api/deadletters)")
    if not settings.kafka_bootstrap and not args.dry_run:
        raise SettingsError("COTERM_KAFKA_BOOTSTRAP is not set: `coterm redrive` publishes to the orders topic")
    app = _open_existing_store()
    try:
        projection = Projection(app)
        projection.run_to_end()  # select from read models that include every dead letter recorded so far
        ids = list(args.id or []) or _select(Queries(app, projection.tables), args)
        producer = None
        if not args.dry_run:
            try:
                producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                         **settings.kafka_options())
            except KafkaError as error:
                raise SettingsError(f"COTERM_KAFKA_BOOTSTRAP={settings.kafka_bootstrap!r}: {type(error).__name__}") from None

        def publish(key: bytes | None, value: bytes) -> None:
            assert producer is not None
            producer.send(settings.topic_orders, key=key, value=value).get(timeout=30)

        outcomes = redrive(app, publish, ids, args.by, args.why, corrected, args.dry_run)
        if producer is not None:
            producer.close(timeout=10)
    finally:
        app.close()
    if args.json:
        print(json.dumps([o.as_dict() for o in outcomes], indent=2))
    else:
        for o in outcomes:
            print(f"{o.deadletter_id}  {'re-driven as ' + str(o.new_message_id) if o.done else 'not re-driven'}: {o.why}")
        print(f"{sum(o.done for o in outcomes)} of {len(outcomes)} dead letter(s) re-driven", file=sys.stderr)
    if not outcomes:
        print("coterm: no dead letter matches", file=sys.stderr)
        return 1
    return 0 if all(o.done for o in outcomes) or args.dry_run else 1


def _select(queries: Any, args: argparse.Namespace) -> list[str]:
    from projections.queries import BadQuery

    ids, cursor = [], None
    try:
        while True:
            page = queries.list_deadletters(args.reason, args.since.isoformat() if args.since else None,
                                            args.until.isoformat() if args.until else None, 500, cursor)
            ids += [item["id"] for item in page["items"] if item.get("id")]
            cursor = page["next_cursor"]
            if not cursor:
                return list(reversed(ids))  # oldest first: re-driven in the order they first came
    except BadQuery as error:
        raise SettingsError(str(error)) from None


def _corrected(path: str) -> dict[str, Any]:
    try:
        value = json.loads(Path(path).read_text())
    except OSError as error:
        raise SettingsError(f"--message {path}: {error.strerror}") from None
    except ValueError as error:
        raise SettingsError(f"--message {path}: not JSON ({error})") from None
    if not isinstance(value, dict):
        raise SettingsError(f"--message {path}: must hold one JSON object, the whole corrected message")
    return value


def add_parser(sub: Any, timestamp: Any) -> None:
    red = sub.add_parser("redrive", help="publish chosen dead letters to the orders topic again (once each), "
                         "recorded with who and why")
    red.add_argument("--id", action="append", metavar="ID", help="a dead letter id (repeatable)")
    red.add_argument("--reason", metavar="REASON", help="every dead letter with this reason")
    red.add_argument("--since", type=timestamp, metavar="TIMESTAMP", help="recorded at or after")
    red.add_argument("--until", type=timestamp, metavar="TIMESTAMP", help="recorded before")
    red.add_argument("--message", metavar="FILE", help="a corrected message (one JSON object) for the one --id")
    red.add_argument("--by", required=True, metavar="NAME", help="who re-drives (recorded)")
    red.add_argument("--why", required=True, metavar="TEXT", help="why (recorded)")
    red.add_argument("--dry-run", action="store_true", help="say what would be re-driven, change nothing")
    red.add_argument("--json", action="store_true", help="the outcome per dead letter as JSON")
    red.set_defaults(func=cmd_redrive)
