"""`coterm reconcile`: one pass over every subscription, comparing coterm's seats with the
vendor's (CONTRACT.md section 7); the stored pass is resumed unless `--restart`."""

import argparse
import getpass
import json
import signal
import socket
import sys
import threading
from typing import Any

from processor.settings import Settings, SettingsError


def cmd_reconcile(args: argparse.Namespace) -> int:
    from processor.log_setup import configure_logging
    from processor.outbox.vendor_client import Stopped, VendorClient, VendorReadRefused, VendorUnreachable
    from processor.reconcile.sweep import Interrupted, Sweep
    from processor.store.opening import open_store, sqlite_path

    configure_logging()  # JSON lines on standard error; standard output holds the report
    settings = Settings.from_env()
    if not settings.vendor_url:
        raise SettingsError("COTERM_VENDOR_URL is not set: reconciliation asks the vendor for its seats")
    rate = settings.reconcile_rate if args.rate is None else args.rate
    if not rate > 0 or rate == float("inf"):
        raise SettingsError(f"--rate {args.rate}: must be a finite number of reads a second greater than zero")
    path = sqlite_path(settings.store)
    if path is not None and not path.exists():
        raise SettingsError(f"COTERM_STORE={settings.store!r} does not exist: nothing to reconcile")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())  # the pass keeps its progress: run again to resume
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    app = open_store(settings.store, cached=False)
    vendor = VendorClient(settings.vendor_url, settings.vendor_max_attempts, stop=stop, sender="coterm-reconcile",
                          retry_after_max_s=settings.vendor_retry_after_max_s)
    by = args.by or f"coterm reconcile ({getpass.getuser()}@{socket.gethostname()})"
    try:
        report = Sweep(app, vendor, by, rate, stop, revisit_for_s=args.wait_in_flight).run(restart=args.restart)
    except (Interrupted, Stopped):
        print("coterm: reconciliation stopped; its progress is kept: `coterm reconcile` resumes it", file=sys.stderr)
        return 130
    except (VendorUnreachable, VendorReadRefused) as error:
        print(f"coterm: {error}; the pass's progress is kept: `coterm reconcile` resumes it", file=sys.stderr)
        return 1
    finally:
        vendor.close()
        app.close()
    _print(report, args.json)
    return 0


def _print(report: Any, as_json: bool) -> None:
    from dataclasses import asdict

    if as_json:
        print(json.dumps(asdict(report), indent=2))
        return
    c = report.counts
    print(f"reconciliation pass {report.pass_id}{' (resumed)' if report.resumed else ''}: "
          f"{c['checked']} subscription(s) compared with the vendor")
    print(f"  agree: {c['agrees']}   new drift: {c['drift']}   drift already on record: {c['known']}   "
          f"drift gone (they agree again): {c['cleared']}")
    print(f"  unknown to the vendor: {c['vendor_unknown']}   still in flight (next pass): {c['in_flight']}")
    if report.in_flight:
        print(f"  in flight: {', '.join(report.in_flight[:20])}{' ...' if len(report.in_flight) > 20 else ''}")
    print("drifted subscriptions: GET /api/drift, or the dashboard's Drift page", file=sys.stderr)


def add_parser(sub: Any) -> None:
    rec = sub.add_parser("reconcile", help="compare every subscription's seats with the vendor's and record drift")
    rec.add_argument("--rate", type=float, metavar="N", help="vendor reads a second at most "
                     "(default: COTERM_RECONCILE_RATE)")
    rec.add_argument("--restart", action="store_true", help="start a new pass instead of resuming the stored one")
    rec.add_argument("--wait-in-flight", type=float, default=60.0, metavar="S",
                     help="how long to come back to subscriptions with a transfer in flight (default 60)")
    rec.add_argument("--by", metavar="NAME", help="who runs it, recorded with each drift (default: user@host)")
    rec.add_argument("--json", action="store_true", help="the pass's counts as JSON")
    rec.set_defaults(func=cmd_reconcile)
