"""`coterm history`, `replay` and `export`: the auditors' commands."""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from processor.settings import Settings, SettingsError

# Each command imports what it needs inside itself: the store, Kafka and the web stack cost
# about 0.7 s to import, and `coterm --help`, `--version` and a mistyped command answer in 0.15 s.


def _open_existing_store() -> Any:
    from processor.store.opening import open_store, sqlite_path

    settings = Settings.from_env()
    path = sqlite_path(settings.store)
    if path is not None and not path.exists():
        raise SettingsError(f"COTERM_STORE={settings.store!r} does not exist: nothing to audit")
    return open_store(settings.store)


def cmd_history(args: argparse.Namespace) -> int:
    from projections.audit import AuditError, history

    app = _open_existing_store()
    try:
        report = history(app, args.kind, args.id, args.as_of)  # type: ignore[arg-type]
    except AuditError as error:
        print(f"coterm: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    as_of = f" as of {report['as_of']}" if report["as_of"] else ""
    print(f"{args.kind} {args.id}{as_of}: {len(report['events'])} event(s)\n")
    for e in report["events"]:
        cause = f"  (message {e['message_id']})" if e["message_id"] else ""
        print(f"{e['at']}  v{e['version']:<3} {e['type']}{cause}")
        print(f"    {json.dumps(e['data'], sort_keys=True)}")
    print("\nstate:")
    print(json.dumps(report["state"], indent=2, sort_keys=True))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from projections.audit import replay

    app = _open_existing_store()
    started = time.monotonic()
    head = app.process_recorder.max_notification_id() or 0
    if head > 100_000:  # a long one: say so before the wait
        print(f"replaying {head:,} events…", file=sys.stderr, flush=True)
    report = replay(app, verify=args.verify)  # type: ignore[arg-type]
    seconds = time.monotonic() - started
    if args.json:
        print(json.dumps({**report, "seconds": round(seconds, 2), "verified": args.verify,
                          "matches": not report["differences"] if args.verify else None}, indent=2))
        return 1 if args.verify and report["differences"] else 0
    print(f"replayed {report['events_read']} events up to position {report['position']} into fresh tables "
          f"in {seconds:.2f}s")
    if not args.verify:
        return 0
    if report["differences"]:
        print(f"read models DIFFER from a replay in {len(report['differences'])} row(s):")
        for line in report["differences"][:100]:
            print(f"  {line}")
        return 1
    print("read models match the replay, byte for byte")
    return 0


def _export_bulk(args: argparse.Namespace) -> int:
    from projections.bulk_report import bulk_csv, bulk_doc_from_store, bulk_view

    if args.since is not None or args.until is not None:
        raise SettingsError("--bulk exports one bulk migration whole: leave out --since and --until")
    app = _open_existing_store()
    doc = bulk_doc_from_store(app, args.bulk)
    if doc is None:
        print(f"coterm: bulk {args.bulk} is unknown in {Settings.from_env().store}", file=sys.stderr)
        return 1
    if args.format == "jsonl":
        raise SettingsError("--bulk writes csv or json, not jsonl")
    text = bulk_csv(doc) if args.format in (None, "csv") else json.dumps(bulk_view(doc), indent=2, sort_keys=True) + "\n"
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as error:
            raise SettingsError(f"--output {args.output}: {error.strerror}") from None
    else:
        sys.stdout.write(text)
    rows = sum(len(products) for products in doc["customers"].values())
    print(f"exported bulk {args.bulk}: {len(doc['customers'])} customer(s), {rows} row(s), {doc['status']}",
          file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from projections.audit import export

    if args.bulk is not None:
        return _export_bulk(args)
    if args.format not in (None, "jsonl"):
        raise SettingsError(f"--format {args.format} is for --bulk; the audit trail is JSON Lines")
    if args.since is None:
        raise SettingsError("export needs --since TIMESTAMP (the audit trail) or --bulk ID (one bulk migration)")
    if args.until is not None and args.until <= args.since:
        raise SettingsError(f"--until {args.until.isoformat()} is not after --since {args.since.isoformat()}")
    app = _open_existing_store()
    try:
        out = open(args.output, "w") if args.output else sys.stdout  # noqa: SIM115 - closed below
    except OSError as error:
        raise SettingsError(f"--output {args.output}: {error.strerror}") from None
    try:
        head = app.process_recorder.max_notification_id() or 0

        def progress(position: int, written: int) -> None:
            print(f"export: at event {position:,} of {head:,}, {written:,} written", file=sys.stderr, flush=True)

        count = export(app, args.since, out, until=args.until, progress=progress)  # type: ignore[arg-type]
    finally:
        if args.output:
            out.close()
    print(f"exported {count} events", file=sys.stderr)
    return 0
