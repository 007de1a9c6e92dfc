"""Read-side queries over the read models (and, for timelines and what-ifs, the event store)."""

import base64
import binascii
import json
from datetime import date, datetime, timezone
from typing import Any

from aggregates import commands, previews
from aggregates.application import Orders
from aggregates.inbox import recorded_dead_letter
from aggregates.transfer import Transfer
from projections.drift_queries import Drift
from projections.identity import Tenant
from projections.recorders import PostgresReadModels, SQLiteReadModels
from projections.stats import BULK_STATUSES, STATUSES, Stats
from projections.timeline import event_record


class BadQuery(ValueError):
    """A query parameter is unusable; the message says which and why."""


def _when(text: str, name: str) -> str:
    try:
        value = datetime.fromisoformat(text) if "T" in text else datetime.combine(date.fromisoformat(text), datetime.min.time())
    except ValueError:
        raise BadQuery(f"{name}={text!r} is not an ISO date or timestamp") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat()


def _page_bounds(limit: int, cursor: str | None, where: list[str], params: list[Any]) -> None:
    """The checks and the condition every newest-first page shares: a sane limit, and rows
    before the cursor's position."""
    if not 1 <= limit <= 500:
        raise BadQuery(f"limit={limit} must be between 1 and 500")
    if cursor:
        where.append("seq < ?")
        params.append(decode_cursor(cursor))


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind != "seq":
            raise ValueError
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadQuery(f"cursor {cursor!r} is not one this API returned") from None


def _decode_after(cursor: str) -> str:
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        kind, value = "", ""
    if kind != "after":
        raise BadQuery(f"cursor {cursor!r} is not one this API returned")
    return value


class Queries(Stats, Drift):
    def __init__(self, app: Orders, tables: SQLiteReadModels | PostgresReadModels) -> None:
        self.app = app
        self.tables = tables

    def list_operations(self, status: str | None = None, customer: str | None = None, reason: str | None = None,
                        since: str | None = None, until: str | None = None, limit: int = 50,
                        cursor: str | None = None, tenant: Tenant | None = None) -> dict[str, Any]:
        """Newest first; the cursor is the creation position, so pages stay stable while rows change."""
        where: list[str] = []
        params: list[Any] = []
        self._of_tenant(tenant, where, params)
        if status is not None:
            if status not in STATUSES:
                raise BadQuery(f"status={status!r} is not one of {', '.join(STATUSES)}")
            where.append("status = ?")
            params.append(status)
        if customer:
            where.append("customer_id = ?")
            params.append(customer)
        if reason:
            where.append("reason_code = ?")
            params.append(reason)
        if since:
            where.append("first_at >= ?")
            params.append(_when(since, "since"))
        if until:
            where.append("first_at < ?")
            params.append(_when(until, "until"))
        _page_bounds(limit, cursor, where, params)
        sql = f"SELECT seq, doc FROM {self._t('operations')}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self.tables.fetch(sql + " ORDER BY seq DESC LIMIT ?", [*params, limit + 1])
        items = [json.loads(r["doc"]) for r in rows[:limit]]
        next_cursor = encode_cursor(rows[limit - 1]["seq"]) if len(rows) > limit else None
        return {"items": items, "next_cursor": next_cursor}

    def operation(self, operation_id: str, tenant: Tenant | None = None) -> dict[str, Any] | None:
        where, params = ["operation_id = ?"], [operation_id]
        self._of_tenant(tenant, where, params)
        rows = self.tables.fetch(f"SELECT doc FROM {self._t('operations')} WHERE {' AND '.join(where)}", params)
        if not rows:
            return None
        doc = json.loads(rows[0]["doc"])
        doc["timeline"] = [event_record(e) for e in self.app.events.get(Transfer.create_id(operation_id))]
        doc["waits_for"] = self._waits_for(doc) if doc.get("status") == "paired" else []
        return doc

    def _waits_for(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """A decided call not yet sent: the transfers ahead of it on its source and existing
        target (contract 1.2), each with the status that holds it there (e.g. parked)."""
        request = doc.get("vendor_request") or {}
        subs = [request.get("source", {}).get("subscription_id"), request.get("target", {}).get("subscription_id")]
        ahead: dict[str, str] = {}
        for sub in filter(None, subs):
            found = self.tables.fetch(f"SELECT doc FROM {self._t('subscriptions')} WHERE subscription_id = ?", [sub])
            line = [t["operation_id"] for t in json.loads(found[0]["doc"]).get("in_flight", [])] if found else []
            if doc["operation_id"] in line:
                for op in line[: line.index(doc["operation_id"])]:
                    ahead.setdefault(op, sub)
        waits = []
        for op, sub in ahead.items():
            other = self.tables.fetch(f"SELECT status, reason_code FROM {self._t('operations')} WHERE operation_id = ?", [op])
            waits.append({"operation_id": op, "subscription_id": sub, "status": other[0]["status"] if other else None,
                          "reason_code": other[0]["reason_code"] if other else None})
        return waits

    def customer(self, customer_id: str, on: date, tenant: Tenant | None = None) -> dict[str, Any] | None:
        where, params = ["customer_id = ?"], [customer_id]
        self._of_tenant(tenant, where, params)
        rows = self.tables.fetch(f"SELECT doc FROM {self._t('customers')} WHERE {' AND '.join(where)}", params)
        if not rows:
            return None
        doc = json.loads(rows[0]["doc"])
        subs = self.tables.fetch(f"SELECT doc FROM {self._t('subscriptions')} WHERE customer_id = ? "
                                 "ORDER BY subscription_id", [customer_id])
        doc["subscriptions"] = [json.loads(r["doc"]) for r in subs]
        migrations = self.tables.fetch(f"SELECT doc FROM {self._t('migrations')} WHERE customer_id = ? "
                                       "ORDER BY request_id", [customer_id])
        doc["migrations"] = [json.loads(r["doc"]) for r in migrations]
        doc["migration_eligibility"] = {"on": on.isoformat(), "products": self.eligibility(customer_id, on)}
        return doc

    def list_customers(self, q: str | None = None, limit: int = 50, cursor: str | None = None,
                       tenant: Tenant | None = None) -> dict[str, Any]:
        """By customer id; `q` keeps those whose id or name holds it (any case). The cursor is the
        last id shown, so a page stays stable while customers register."""
        if not 1 <= limit <= 500:
            raise BadQuery(f"limit={limit} must be between 1 and 500")
        after = _decode_after(cursor) if cursor else ""
        needle = (q or "").strip().lower()
        # The document is JSON (non-ASCII and quotes escaped): only a plain needle can be matched in SQL.
        plain = needle.isascii() and needle.isprintable() and not any(c in needle for c in '\\"')
        pattern = "%" + needle.replace("%", "\\%").replace("_", "\\_") + "%" if plain and needle else None
        items: list[dict[str, Any]] = []
        while len(items) <= limit:
            # The document holds the name: a cheap filter in SQL, the exact one here.
            where, params = ["customer_id > ?"], [after]
            if pattern:
                where.append("lower(doc) LIKE ? ESCAPE '\\'")
                params.append(pattern)
            self._of_tenant(tenant, where, params)
            rows = self.tables.fetch(f"SELECT customer_id, doc FROM {self._t('customers')} WHERE {' AND '.join(where)}"
                                     " ORDER BY customer_id LIMIT 500", params)
            for row in rows:
                doc = json.loads(row["doc"])
                if needle in doc["customer_id"].lower() or needle in str(doc.get("name", "")).lower():
                    items.append({k: doc.get(k) for k in ("customer_id", "name", "partner_id", "channel",
                                                           "distributor_id", "data_complete")}
                                 | {"subscriptions": len(doc.get("subscription_ids", [])),
                                    "usage_based_bundle": doc.get("bundle") is not None})
            if len(rows) < 500:
                break
            after = rows[-1]["customer_id"]
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            next_cursor = base64.urlsafe_b64encode(f"after:{items[-1]['customer_id']}".encode()).decode()
        return {"items": items, "next_cursor": next_cursor}

    def migration(self, request_id: str, tenant: Tenant | None = None) -> dict[str, Any] | None:
        where, params = ["request_id = ?"], [request_id]
        self._of_tenant(tenant, where, params)
        rows = self.tables.fetch(f"SELECT doc FROM {self._t('migrations')} WHERE {' AND '.join(where)}", params)
        return json.loads(rows[0]["doc"]) if rows else None

    def eligibility(self, customer_id: str, on: date) -> list[dict[str, Any]]:
        """Would a migration of each product the customer holds be accepted on `on`? The domain's
        own rules, dry-run (`aggregates.previews`, as `coterm preview migration`)."""
        uow = self.app.unit_of_work()
        _, subscriptions = commands.customer_holdings(uow, customer_id)
        products = sorted({s.product_id for s in subscriptions})
        preview = previews.preview_migration(uow, customer_id, products, on)
        out = []
        for p in preview["products"]:
            eligible = p["decision"] == "accepted"
            detail = f"{len(p['migrating'])} subscription(s) would migrate, keeping their keys" if eligible else p["detail"]
            out.append({"product_id": p["product_id"], "eligible": eligible, "reason_code": p["reason_code"],
                        "detail": detail, "eligible_from": None if eligible else p["eligible_from"],
                        "refusals": p["refusals"]})
        return out

    def business_date(self) -> date:
        """The date a what-if uses when none is given: the business date coterm reached (the
        latest `occurred_at` it applied), else today in UTC."""
        return previews.business_date(self.app.unit_of_work()) or datetime.now(timezone.utc).date()

    def preview_transfer(self, source: str, seats: int, target: dict[str, Any], on: date | None) -> dict[str, Any]:
        uow = self.app.unit_of_work()
        return previews.preview_transfer(uow, source, seats, target, on or self.business_date())

    def preview_migration(self, customer_id: str, product_ids: list[str], on: date | None) -> dict[str, Any]:
        uow = self.app.unit_of_work()
        return previews.preview_migration(uow, customer_id, product_ids, on or self.business_date())

    def bulk_doc(self, bulk_id: str, tenant: Tenant | None = None) -> dict[str, Any] | None:
        where, params = ["bulk_id = ?"], [bulk_id]
        self._bulks_of(tenant, where, params)
        rows = self.tables.fetch(f"SELECT doc FROM {self._t('bulks')} WHERE {' AND '.join(where)}", params)
        return self._confine_bulk(json.loads(rows[0]["doc"]), tenant) if rows else None

    def list_bulks(self, partner: str | None = None, status: str | None = None, limit: int = 50,
                   cursor: str | None = None, tenant: Tenant | None = None) -> dict[str, Any]:
        """Newest first; each bulk without its per-customer detail (`bulk_doc` has it)."""
        where: list[str] = []
        params: list[Any] = []
        self._bulks_of(tenant, where, params)
        if partner:
            where.append("partner_id = ?")
            params.append(partner)
        if status:
            if status not in BULK_STATUSES:
                raise BadQuery(f"status={status!r} is not one of {', '.join(BULK_STATUSES)}")
            where.append("status = ?")
            params.append(status)
        _page_bounds(limit, cursor, where, params)
        sql = f"SELECT seq, doc FROM {self._t('bulks')}" + (" WHERE " + " AND ".join(where) if where else "")
        items: list[dict[str, Any]] = []
        last_seq = None
        # A distributor's page may pass over bulks with none of its customers: read on until it is full.
        for row in self.tables.fetch(sql + " ORDER BY seq DESC", params):
            doc = self._confine_bulk(json.loads(row["doc"]), tenant)
            if doc is None:
                continue
            if len(items) == limit:
                return {"items": items, "next_cursor": encode_cursor(last_seq)}
            doc.pop("customers")
            doc.pop("customer_ids", None)  # up to 50,000 ids: the bulk's own page lists them
            doc["customers"] = len(doc.pop("customer_order"))
            items.append(doc)
            last_seq = row["seq"]
        return {"items": items, "next_cursor": None}

    def list_deadletters(self, reason: str | None = None, since: str | None = None, until: str | None = None,
                         limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        """Newest first, by store position (stable pages). `since`/`until` compare the recording time."""
        where: list[str] = []
        params: list[Any] = []
        _page_bounds(limit, cursor, where, params)
        low = _when(since, "since") if since else None
        high = _when(until, "until") if until else None
        if reason:
            where.append("reason = ?")
            params.append(reason)
        sql = f"SELECT seq, doc FROM {self._t('deadletters')}" + (" WHERE " + " AND ".join(where) if where else "")
        items: list[dict[str, Any]] = []
        last_seq = None
        for row in self.tables.fetch(sql + " ORDER BY seq DESC", params):
            doc = json.loads(row["doc"])
            if (low and doc["at"] < low) or (high and doc["at"] >= high):
                continue  # the recording time is in the document only: filtered here
            if len(items) == limit:
                return {"items": items, "next_cursor": encode_cursor(last_seq)}
            items.append(doc)
            last_seq = row["seq"]
        return {"items": items, "next_cursor": None}

    def deadletter(self, row_id: str) -> dict[str, Any] | None:
        """One dead letter with its original bytes, decoded as far as they decode."""
        rows = self.tables.fetch(f"SELECT doc FROM {self._t('deadletters')} WHERE id = ?", [row_id])
        if not rows:
            return None
        doc = json.loads(rows[0]["doc"])
        recorded = recorded_dead_letter(self.app.events, row_id)
        assert recorded is not None  # its read-model row was made from this event
        raw = base64.b64decode(recorded.original)
        doc["original_base64"] = recorded.original
        doc["original_bytes"] = len(raw)
        try:
            doc["original_text"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            doc["original_text"] = None  # not UTF-8: the base64 is all there is
        try:
            doc["original_json"] = json.loads(raw)
        except (ValueError, RecursionError):
            doc["original_json"] = None
        return doc
