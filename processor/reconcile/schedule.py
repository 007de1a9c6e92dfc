"""The scheduled reconciliation passes of `coterm run`: a thread of the outbox process that
runs a pass whenever one is due and this processor leads (one reconciler for all processors,
like the vendor calls), through the same limiter as the calls.

A pass is due COTERM_RECONCILE_EVERY_S after the last one finished, or after the schedule was
first recorded in the store; an unfinished pass (a restart, a lost leadership) is resumed at
once from where it recorded its progress. Due times come from the store, so restarts do not
postpone a pass for ever.
"""

import threading
from datetime import datetime, timezone
from typing import Any

import structlog

from aggregates.reconciliation import Reconciliation
from processor.outbox.vendor_client import Stopped, VendorClient, VendorReadRefused, VendorUnreachable
from processor.reconcile.sweep import Interrupted, Sweep
from processor.store.opening import open_store

log = structlog.get_logger("coterm.reconcile")
LOOK_EVERY_S = 5.0
AFTER_VENDOR_TROUBLE_S = 60.0
REVISIT_FOR_S = 60.0


class Schedule:
    def __init__(self, settings: Any, leading: Any, vendor_options: dict[str, Any], by: str) -> None:
        """`leading`: whether this processor leads now (`Leadership.held`); `vendor_options`: the
        vendor client's, with the outbox's shared limiter."""
        self.settings = settings
        self.leading = leading
        self.vendor_options = vendor_options
        self.by = by
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="reconcile", daemon=True)

    def start(self) -> "Schedule":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)

    def _run(self) -> None:
        app = None
        while not self.stop_event.is_set():
            try:
                # No cache: a cached one would follow the whole log to stay current, on the outbox's core.
                app = app or open_store(self.settings.store, cached=False)
                self.stop_event.wait(self._round(app))
            except Exception as error:  # noqa: BLE001 - a lost database: look again later, from the stored pass
                log.warning("reconcile.round_failed", error=f"{type(error).__name__}: {error}"[:300])
                self.stop_event.wait(LOOK_EVERY_S)
        if app is not None:
            app.close()

    def _round(self, app: Any) -> float:
        """Run a pass if one is due and this processor leads; how long to wait before looking again."""
        if not self.leading():
            return LOOK_EVERY_S
        due_in = self._due_in(app)
        if due_in > 0:
            return min(due_in, LOOK_EVERY_S)
        vendor = VendorClient(self.settings.vendor_url, self.settings.vendor_max_attempts, stop=self.stop_event,
                              retry_after_max_s=self.settings.vendor_retry_after_max_s, **self.vendor_options)
        sweep = Sweep(app, vendor, self.by, self.settings.reconcile_rate, self.stop_event, may_run=self.leading,
                      revisit_for_s=REVISIT_FOR_S)
        try:
            sweep.run()
        except (Interrupted, Stopped) as why:
            log.info("reconcile.pass_interrupted", why=str(why) or "stopping")
        except (VendorUnreachable, VendorReadRefused) as error:
            log.warning("reconcile.vendor_trouble", error=str(error)[:300], retry_in_s=AFTER_VENDOR_TROUBLE_S)
            return AFTER_VENDOR_TROUBLE_S
        finally:
            vendor.close()
        return 0.0

    def _due_in(self, app: Any) -> float:
        def change(uow: Any) -> Reconciliation:
            return uow.get(Reconciliation, Reconciliation.create_id()) or uow.add(Reconciliation())

        passes = app.decide(change)  # the first look records when the schedule began
        if passes.current is not None:
            return 0.0
        since = datetime.fromisoformat(passes.last["finished_at"]) if passes.last else passes.created_on
        elapsed = (datetime.now(timezone.utc) - since).total_seconds()
        return float(self.settings.reconcile_every_s - elapsed)
