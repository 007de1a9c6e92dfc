"""`coterm serve`: the query API, staff actions and dashboard over the store."""

import argparse
import socket
import sys

from processor.settings import Settings, SettingsError

# Each command imports what it needs inside itself: the store, Kafka and the web stack cost
# about 0.7 s to import, and `coterm --help`, `--version` and a mistyped command answer in 0.15 s.


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from processor.orders_out import orders_out
    from processor.store.opening import open_store
    from projections.api import create_app
    from projections.staff import Staff, StaffError

    settings = Settings.from_env()
    try:
        staff = Staff.load(settings.staff_file)
    except StaffError as error:
        raise SettingsError(str(error)) from None
    _check_port_free(args.host, args.port)
    app = open_store(settings.store)
    if not staff.enabled:
        print("coterm: COTERM_STAFF_FILE is unset: reads are open to anyone who reaches this port, "
              "cancel and retry are refused", file=sys.stderr)
    orders = orders_out(settings)
    if not settings.kafka_bootstrap:
        print("coterm: COTERM_KAFKA_BOOTSTRAP is unset: orders cannot be placed from the dashboard or API "
              "(their buttons are greyed; POSTs answer 503)", file=sys.stderr)
    print(f"coterm: dashboard on http://{args.host}:{args.port}/  (API docs at /docs, OpenAPI at /openapi.json)",
          file=sys.stderr, flush=True)
    uvicorn.run(create_app(app, staff, ready_max_lag_s=settings.ready_max_lag_s, orders=orders), host=args.host, port=args.port, log_level="warning")
    return 0


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as error:
            raise SettingsError(f"--host {host} --port {port}: cannot listen there: {error.strerror}") from None


def cmd_hash_token(args: argparse.Namespace) -> int:
    """The SHA-256 a staff file may hold instead of the token (read from stdin: not in shell history)."""
    from projections.staff import hash_token

    token = sys.stdin.readline().strip()
    if len(token) < 16:
        raise SettingsError("a staff token is at least 16 characters; give it on standard input")
    print(hash_token(token))
    return 0
