"""The consume loop and the inbox: Kafka orders in, one store transaction per partition's batch.

`runner` (poll, apply, commit, follow the group), `inbox` (a batch applied exactly once: events,
Kafka position and seen message ids in one transaction), `translate` (wire messages to domain
commands), `bulk_barrier` (a bulk's customers applied before its summary).
"""
