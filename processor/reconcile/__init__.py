"""Reconciliation with the vendor (CONTRACT.md section 7): a pass over every subscription
(`sweep`), run by `coterm reconcile` or on a schedule by the leading `coterm run` (`schedule`)."""
