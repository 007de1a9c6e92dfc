"""`coterm serve`: the query API, staff actions and dashboard over the store."""

import argparse
import os
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from processor.settings import Settings, SettingsError

if TYPE_CHECKING:
    from projections.oidc import Issuer

# Each command imports what it needs inside itself: the store, Kafka and the web stack cost
# about 0.7 s to import, and `coterm --help`, `--version` and a mistyped command answer in 0.15 s.


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from processor.orders_out import orders_out
    from processor.store.opening import open_store, sqlite_path
    from projections.api import create_app
    from projections.staff import Staff, StaffError

    settings = Settings.from_env()
    try:
        staff = Staff.load(settings.staff_file)
    except StaffError as error:
        raise SettingsError(str(error)) from None
    _check_port_free(args.host, args.port)
    path = sqlite_path(settings.store)
    if path is not None and not path.exists() and not args.create_store:
        raise SettingsError(f"COTERM_STORE={settings.store!r} does not exist (a typo? `coterm serve --create-store` "
                            "starts on a new, empty store)")
    issuer = _issuer(settings)
    app = open_store(settings.store)
    if not staff.enabled and issuer is None:
        print("coterm: COTERM_STAFF_FILE and COTERM_OIDC_ISSUER are unset: reads are open to anyone who reaches "
              "this port, cancel and retry are refused", file=sys.stderr)
    orders = orders_out(settings)
    if not settings.kafka_bootstrap:
        print("coterm: COTERM_KAFKA_BOOTSTRAP is unset: orders cannot be placed from the dashboard or API "
              "(their buttons are greyed; POSTs answer 503)", file=sys.stderr)
    print(f"coterm: dashboard on http://{args.host}:{args.port}/  (API docs at /docs, OpenAPI at /openapi.json)",
          file=sys.stderr, flush=True)
    replaced = _replaced_file(settings.store) if path is not None else (lambda: None)
    uvicorn.run(create_app(app, staff, ready_max_lag_s=settings.ready_max_lag_s, orders=orders, store_problem=replaced,
                           issuer=issuer),
                host=args.host, port=args.port, log_level="warning")
    return 0


def _issuer(settings: Settings) -> "Issuer | None":
    """The issuer whose tokens `/api` accepts. Its discovery document is read now to say early
    when it is unreachable or names another issuer; serve starts anyway and asks again per
    request (an identity provider restarting with coterm must not keep coterm down)."""
    from projections.oidc import Issuer, OidcConfig, ProviderUnavailable

    if not settings.oidc_issuer or not settings.oidc_audience:
        return None
    issuer = Issuer(OidcConfig(issuer=settings.oidc_issuer, audience=settings.oidc_audience,
                               client_id=settings.oidc_client_id, scopes=settings.oidc_scopes,
                               roles_claim=settings.oidc_roles_claim, partner_claim=settings.oidc_partner_claim,
                               distributor_claim=settings.oidc_distributor_claim))
    try:
        algorithms = issuer.algorithms()
    except ProviderUnavailable as error:
        print(f"coterm: COTERM_OIDC_ISSUER cannot be read now ({error}); its tokens are refused (503) until it can",
              file=sys.stderr)
        return issuer
    if not algorithms:
        raise SettingsError(f"COTERM_OIDC_ISSUER={settings.oidc_issuer!r} publishes no asymmetric signing algorithm "
                            "(id_token_signing_alg_values_supported): coterm accepts RS*, PS*, ES* and EdDSA only")
    print(f"coterm: accepting tokens of {settings.oidc_issuer} for audience {settings.oidc_audience} "
          f"({', '.join(algorithms)})", file=sys.stderr)
    return issuer


def _replaced_file(path: str) -> Callable[[], str | None]:
    """A SQLite file removed or replaced under a running serve (say, `coterm demo` run again) would
    leave it serving the old file's data while saying ready: readiness says so instead."""
    opened = os.stat(path)

    def problem() -> str | None:
        try:
            now = os.stat(path)
        except OSError:
            return f"the store file {path} was removed after coterm serve opened it: restart coterm serve"
        if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
            return f"the store file {path} was replaced after coterm serve opened it: restart coterm serve"
        return None

    return problem


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as error:
            raise SettingsError(f"--host {host} --port {port}: cannot listen there: {error.strerror}") from None

