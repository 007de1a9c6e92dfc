"""Counts and charts over the read models (`/api/stats`, `/metrics`), a tenant's confined to its customers."""

from typing import Any

from projections.identity import Tenant
from projections.tenancy import TenantScope

BULK_STATUSES = ("requested", "deciding", "finished", "cancelled")
STATUSES = ("waiting_for_pair", "paired", "sent", "completed", "rejected", "failed", "cancelled", "expired")


def _percentile(values: list[int], share: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


class Stats(TenantScope):
    def _where(self, tenant: Tenant | None, *conditions: str, bulks: bool = False) -> tuple[str, list[Any]]:
        where, params = list(conditions), []  # type: ignore[var-annotated]
        (self._bulks_of if bulks else self._of_tenant)(tenant, where, params)
        return (" WHERE " + " AND ".join(where) if where else ""), params

    def counts(self, tenant: Tenant | None = None) -> dict[str, dict[str, int]]:
        """Operations by status and by reason, dead letters by reason, bulk migrations by status:
        four GROUP BYs (`/metrics`). A tenant's: its customers' only, and no dead letters (staff's)."""
        ops = self._t("operations")
        where, params = self._where(tenant)
        by_status = {r["status"]: r["n"] for r in self.tables.fetch(
            f"SELECT status, COUNT(*) AS n FROM {ops}{where} GROUP BY status", params)}
        where, params = self._where(tenant, "reason_code IS NOT NULL")
        by_reason = {r["reason_code"]: r["n"] for r in self.tables.fetch(
            f"SELECT reason_code, COUNT(*) AS n FROM {ops}{where} GROUP BY reason_code", params)}
        letters = {} if tenant is not None else {r["reason"]: r["n"] for r in self.tables.fetch(
            f"SELECT reason, COUNT(*) AS n FROM {self._t('deadletters')} GROUP BY reason")}
        where, params = self._where(tenant, bulks=True)
        bulks = {r["status"]: r["n"] for r in self.tables.fetch(
            f"SELECT status, COUNT(*) AS n FROM {self._t('bulks')}{where} GROUP BY status", params)}
        return {"total": sum(by_status.values()), "by_status": {s: by_status.get(s, 0) for s in STATUSES},
                "by_reason": dict(sorted(by_reason.items())), "dead_letters": dict(sorted(letters.items())),
                "bulks": {s: bulks.get(s, 0) for s in BULK_STATUSES}}

    def stats(self, tenant: Tenant | None = None) -> dict[str, Any]:
        """Counts and charts; a tenant's cover its own customers only."""
        ops = self._t("operations")
        counts = self.counts(tenant)
        where, params = self._where(tenant)
        seats = {r["plan_id"]: {"seats": r["seats"], "subscriptions": r["n"]} for r in self.tables.fetch(
            f"SELECT plan_id, CAST(SUM(seats) AS BIGINT) AS seats, COUNT(*) AS n FROM {self._t('subscriptions')}{where} "
            "GROUP BY plan_id", params)}
        migrations = {r["outcome"]: r["n"] for r in self.tables.fetch(
            f"SELECT outcome, COUNT(*) AS n FROM {self._t('migrations')}{where} GROUP BY outcome", params)}
        where, params = self._where(tenant, "pairing_latency_ms IS NOT NULL")
        pairing = [r["v"] for r in self.tables.fetch(f"SELECT pairing_latency_ms AS v FROM {ops}{where}", params)]
        where, params = self._where(tenant, "vendor_latency_ms IS NOT NULL")
        vendor = [r["v"] for r in self.tables.fetch(f"SELECT vendor_latency_ms AS v FROM {ops}{where}", params)]
        # Operations ended per minute (their last change), for the last 30 minutes with any activity.
        where, params = self._where(tenant, "status IN ('completed', 'rejected', 'failed', 'expired', 'cancelled')")
        ended = self.tables.fetch(
            f"SELECT substr(updated_at, 1, 16) AS minute, status, COUNT(*) AS n FROM {ops}{where} "
            f"GROUP BY substr(updated_at, 1, 16), status ORDER BY minute DESC LIMIT 150", params)
        minutes: dict[str, dict[str, int]] = {}
        for r in ended:
            if r["minute"] in minutes or len(minutes) < 30:
                bucket = minutes.setdefault(r["minute"], {"completed": 0, "not_completed": 0})
                bucket["completed" if r["status"] == "completed" else "not_completed"] += r["n"]
        return {
            "operations": {k: counts[k] for k in ("total", "by_status", "by_reason")},
            "migrations": migrations,
            "bulk_migrations": counts["bulks"],
            "seats_by_plan": dict(sorted(seats.items())),
            "dead_letters": {"total": sum(counts["dead_letters"].values()), "by_reason": counts["dead_letters"]},
            "pairing_latency_ms": {"p50": _percentile(pairing, 0.5), "p95": _percentile(pairing, 0.95), "n": len(pairing)},
            "vendor_latency_ms": {"p50": _percentile(vendor, 0.5), "p95": _percentile(vendor, 0.95), "n": len(vendor)},
            "ended_per_minute": [{"minute": m, **minutes[m]} for m in sorted(minutes)],
        }
