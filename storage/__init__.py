"""The store's infrastructure under coterm's application: custom recorders and tables (seen
message ids, leases, batched lookups, the legacy data migration), the aggregate cache that
follows the log, and stored-value transcodings. It knows no domain class: `aggregates/`
builds its application on `StoredApplication` and names what it needs (e.g. which events
end an aggregate's time in the cache)."""
