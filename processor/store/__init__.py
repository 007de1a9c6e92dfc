"""The event store under coterm's application: opening it (`opening`), the library factories
that build coterm's recorders (`factories`, named by `PERSISTENCE_MODULE`), the recorders with
their tables, the seen-ids legacy migration and the lease fence (`recorders`), and `Orders`
with the cache that follows the log (`stored_orders`)."""
