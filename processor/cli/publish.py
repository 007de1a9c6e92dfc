"""`coterm publish FILE.jsonl`: check every line against the contract, then produce them.

For upstream teams and backfills: a file is refused whole, naming the first bad line, unless
`--skip-invalid`, which produces the good lines and lists the bad ones.
"""

import argparse
import json
import sys
from typing import Any

from processor.settings import Settings, SettingsError

# Each command imports what it needs inside itself: the store, Kafka and the web stack cost
# about 0.7 s to import, and `coterm --help`, `--version` and a mistyped command answer in 0.15 s.


def cmd_publish(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from aggregates.redrive import key_of
    from contracts.parsing import Rejection, parse_message

    settings = Settings.from_env()
    if not settings.kafka_bootstrap and not args.dry_run:  # a dry run checks the file only
        raise SettingsError("COTERM_KAFKA_BOOTSTRAP is not set: `coterm publish` produces to the orders topic")
    try:
        with open(args.file, "rb") as handle:
            lines = handle.read().split(b"\n")
    except OSError as error:
        raise SettingsError(f"{args.file}: {error.strerror}") from None
    good: list[tuple[int, bytes, dict[str, Any]]] = []
    bad: list[str] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        parsed = parse_message(raw.strip())
        if isinstance(parsed, Rejection):
            bad.append(f"line {number}: {parsed.reason}: {parsed.detail}")
            if not args.skip_invalid:
                print(f"coterm: {args.file} refused, nothing published: {bad[0]}", file=sys.stderr)
                return 1
            continue
        good.append((number, raw.strip(), json.loads(raw)))
    if args.dry_run:
        print(f"{len(good)} valid message(s), {len(bad)} invalid; nothing published (--dry-run)")
        for line in bad:
            print(f"  skipped {line}")
        return 0 if not bad else 1
    try:
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=10,
                                 **settings.kafka_options())
        futures = [producer.send(settings.topic_orders, key=key_of(message), value=raw) for _, raw, message in good]
        producer.flush()
        for future in futures:
            future.get(timeout=30)
        producer.close(timeout=10)
    except KafkaError as error:
        raise SettingsError(f"COTERM_KAFKA_BOOTSTRAP={settings.kafka_bootstrap!r}: {type(error).__name__}: {error}") from None
    print(f"published {len(good)} message(s) to {settings.topic_orders}" + (f", skipped {len(bad)}" if bad else ""))
    for line in bad:
        print(f"  skipped {line}")
    return 0


def add_parser(sub: Any) -> None:
    pub = sub.add_parser("publish", help="check a JSON Lines file of order messages against the contract, then "
                         "produce them to the orders topic")
    pub.add_argument("file", metavar="FILE.jsonl", help="one message (envelope) per line")
    pub.add_argument("--skip-invalid", action="store_true", help="publish the valid lines, list the invalid ones")
    pub.add_argument("--dry-run", action="store_true", help="check only (exit 1 when a line is invalid)")
    pub.set_defaults(func=cmd_publish)
