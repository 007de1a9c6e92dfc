"""The `coterm` command: the only place that reads settings and opens connections."""

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, NoReturn

from processor.cli import audit as cli_audit
from processor.cli import preview as cli_preview
from processor.cli import publish as cli_publish
from processor.cli import reconcile as cli_reconcile
from processor.cli import redrive as cli_redrive
from processor.cli import serve as cli_serve
from processor.cli import staff as cli_staff
from processor.settings import Settings, SettingsError

# Each command imports what it needs inside itself: the store, Kafka and the web stack cost
# about 0.7 s to import, and `coterm --help`, `--version` and a mistyped command answer in 0.15 s.


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def cmd_run(args: argparse.Namespace) -> int:
    from processor import collector, tracing
    from processor.consume.runner import run
    from processor.dev.broker import ON_BUNDLED_BROKER, BundledBroker
    from processor.log_setup import configure_logging
    from processor.store.opening import open_store

    settings = Settings.from_env()
    if not settings.vendor_url:
        raise SettingsError("COTERM_VENDOR_URL is not set: `coterm run` needs the vendor API (try `coterm vendor-sim`)")
    configure_logging(level=settings.log_level)
    tracing.configure()  # on only with OTEL_EXPORTER_OTLP_ENDPOINT
    stop = _stop_on_signals()
    app = open_store(settings.store)
    broker = None
    bootstrap = settings.kafka_bootstrap
    if bootstrap is None:
        broker = BundledBroker().start()
        bootstrap = broker.bootstrap
        settings = settings.model_copy(update=ON_BUNDLED_BROKER)
        print(f"coterm: started the bundled broker at {bootstrap} (COTERM_KAFKA_BOOTSTRAP unset)", file=sys.stderr)
        if app.process_recorder.max_tracking_id(f"{settings.topic_orders}:0") is not None:
            print(f"coterm: warning: the bundled broker starts empty but {settings.store} already holds Kafka "
                  "positions; offsets below them are treated as applied. Use a fresh COTERM_STORE with it.",
                  file=sys.stderr)
    try:
        metrics = None
        if args.metrics_port is not None:
            metrics = _metrics_server(args.metrics_host, args.metrics_port, app, settings.ready_max_lag_s)
        # The read models are kept by the outbox process: this one's core goes to the orders.
        collector.tune()
        return run(app, settings, bootstrap, stop, until_idle_s=args.until_idle, metrics=metrics, read_models=True)
    finally:
        app.close()
        if broker:
            broker.stop()


def _metrics_server(host: str, port: int, app: Any, max_lag_s: float) -> Callable[..., Any]:
    from processor.metrics import MetricsServer, Readiness, RunCollector

    def head() -> int:
        return app.process_recorder.max_notification_id() or 0

    def start(inbox: Any, progress: Any, outbox: Any) -> MetricsServer:
        status = outbox.status  # the outbox process keeps the read models and says how far they are
        collector = RunCollector(inbox, progress, status, head, lambda: status.read_model_position.value)
        readiness = Readiness(head, lambda: status.read_models_caught_up_at.value, max_lag_s,
                              extra=lambda: None if outbox.process.is_alive() else "the outbox process is not running",
                              warnings=lambda: progress.partitions.warnings() if progress.partitions else [])
        try:
            server = MetricsServer(host, port, collector, readiness).start()
        except OSError as error:
            raise SettingsError(f"--metrics-port {port}: cannot listen on {host}:{port}: {error.strerror}") from None
        print(f"coterm: metrics on http://{host}:{server.port}/metrics (/healthz, /readyz)", file=sys.stderr)
        return server

    return start


def cmd_vendor_sim(args: argparse.Namespace) -> int:
    from processor.dev.vendor_sim import Faults, VendorSimulator

    faults = Faults(fail_rate=args.fail_rate, fail_first=args.fail_first, reject_plans=args.reject_plan or [],
                    throttle_rate=args.throttle, throttle_share=args.throttle_share,
                    retry_after_s=[args.retry_after[0], args.retry_after[-1]])
    try:
        sim = VendorSimulator(args.port, faults, host=args.host)
    except OSError as error:
        raise SettingsError(f"--host {args.host} --port {args.port}: cannot listen there: {error.strerror}") from None
    stop = _stop_on_signals()
    sim.start()
    print(f"vendor simulator listening on {sim.url}", flush=True)
    stop.wait()
    sim.stop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from processor.dev.demo import run_demo

    if args.serve:
        from processor.cli.serve import _check_port_free

        _check_port_free(args.host, args.port)  # before a minute of demo, not after it
    return run_demo(customers=args.customers, seed=args.seed, as_json=args.json,
                    serve=(args.host, args.port) if args.serve else None)


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00")) if "T" in text or " " in text else \
            datetime.fromisoformat(text + "T00:00:00+00:00")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO timestamp (e.g. 2026-03-03T12:00:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text} must not be negative")
        return value

    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535)") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (0-65535)")
    return value


class OneLineParser(argparse.ArgumentParser):
    """A mistake on the command line is one line on standard error and exit 2, not the usage block."""

    def error(self, message: str) -> "NoReturn":
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("coterm")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="coterm", description="Event-sourced order processor for "
                                     "usage-based migrations and partial seat transfers.")
    parser.add_argument("--version", action="version", version=f"coterm {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_processing(sub)
    _add_audit(sub)
    cli_preview.add_parser(sub)
    cli_redrive.add_parser(sub, _timestamp)
    cli_publish.add_parser(sub)
    cli_staff.add_parser(sub)
    cli_reconcile.add_parser(sub)
    return parser


def _add_processing(sub: Any) -> None:
    """run, demo, vendor-sim, serve."""
    run = sub.add_parser("run", help="consume orders from Kafka until SIGTERM/SIGINT (or idle)")
    run.add_argument("--until-idle", type=_positive(float), metavar="S",
                     help="exit 0 once S seconds pass with no input, no pending vendor call and no result to publish")
    run.add_argument("--metrics-port", type=_port, metavar="PORT",
                     help="serve Prometheus /metrics, /healthz and /readyz on this port (0: any free port)")
    run.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                     help="address for --metrics-port (default 127.0.0.1; 0.0.0.0 in a container)")
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="bundled broker + SQLite + vendor simulator: a realistic stream, end to end")
    demo.add_argument("--customers", type=int, default=300, help="how many customers the stream has (default 300)")
    demo.add_argument("--seed", type=int, default=42, help="random seed of the generated stream")
    demo.add_argument("--json", action="store_true", help="the summary as one JSON document on stdout "
                      "(the narration goes to stderr)")
    demo.add_argument("--serve", action="store_true", help="then keep the broker, a processor and the vendor "
                      "simulator running behind the dashboard, to start migrations, partial upgrades and bulk "
                      "migrations yourself (until Ctrl-C)")
    demo.add_argument("--host", default="127.0.0.1", help="with --serve: the dashboard's address")
    demo.add_argument("--port", type=_port, default=8000, help="with --serve: the dashboard's port (default 8000)")
    demo.set_defaults(func=cmd_demo)

    sim = sub.add_parser("vendor-sim", help="run the vendor API simulator")
    sim.add_argument("--port", type=_port, default=8080)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--fail-rate", type=_positive(float), default=0.0, help="share of attempts answered 503")
    sim.add_argument("--fail-first", type=int, default=0, help="answer the first N attempts of every key with 503")
    sim.add_argument("--reject-plan", action="append", metavar="PLAN_ID", help="answer 400 for this target plan")
    sim.add_argument("--throttle", type=_positive(float), default=0.0, metavar="RATE",
                     help="answer 429 (Retry-After: 1) to requests beyond RATE a second, as a throttling vendor does")
    sim.add_argument("--throttle-share", type=_positive(float), default=0.0, metavar="SHARE",
                     help="answer 429 to this share of attempts, with a Retry-After from --retry-after")
    sim.add_argument("--retry-after", type=int, nargs="+", default=[1], metavar="S",
                     help="the Retry-After of --throttle-share's 429s: S seconds, or LOW HIGH to draw from")
    sim.set_defaults(func=cmd_vendor_sim)

    serve = sub.add_parser("serve", help="query API and operations dashboard over the store")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000)
    serve.add_argument("--create-store", action="store_true", help="start on a new, empty SQLite store when "
                       "COTERM_STORE names none (without it, a missing file is an error: likely a typo)")
    serve.set_defaults(func=cli_serve.cmd_serve)


def _add_audit(sub: Any) -> None:
    """history, replay, export."""
    hist = sub.add_parser("history", help="every event of one aggregate, and its state as of a moment")
    hist.add_argument("kind", choices=["subscription", "customer", "transfer", "migration", "bulk"])
    hist.add_argument("id", help="subscription_id, customer_id, operation_id, request_id or bulk_id")
    hist.add_argument("--as-of", type=_timestamp, metavar="TIMESTAMP", help="only what was recorded by then")
    hist.add_argument("--json", action="store_true", help="one JSON document instead of text")
    hist.set_defaults(func=cli_audit.cmd_history)

    rep = sub.add_parser("replay", help="rebuild every read model from the first event into fresh tables")
    rep.add_argument("--verify", action="store_true", help="compare with the live read models; exit 1 when they differ")
    rep.add_argument("--json", action="store_true", help="the report as one JSON document")
    rep.set_defaults(func=cli_audit.cmd_replay)

    exp = sub.add_parser("export", help="write the audit trail as JSON Lines, or one bulk migration's report")
    exp.add_argument("--since", type=_timestamp, metavar="TIMESTAMP", help="the audit trail from this moment")
    exp.add_argument("--bulk", metavar="BULK_ID", help="instead: one bulk migration, a row per customer and product")
    exp.add_argument("--format", choices=["jsonl", "csv", "json"], default=None,
                     help="jsonl for the audit trail (default); csv (default) or json for --bulk")
    exp.add_argument("--until", type=_timestamp, metavar="TIMESTAMP", help="only events recorded before it")
    exp.add_argument("--output", "-o", metavar="FILE", help="default: standard output")
    exp.set_defaults(func=cli_audit.cmd_export)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:  # e.g. `coterm export ... | head`
        sys.stderr.close()
        return 0
    except SettingsError as error:
        print(f"coterm: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
