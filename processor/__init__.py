"""The processor: Kafka in, the store in the middle, results and vendor calls out.

Rooms: `consume/` (the consume loop and inbox), `outbox/` (results, the exactly-once vendor
call, leadership, pairing timeout, the read models in `coterm run`), `cli/` (the `coterm`
command), `dev/` (demo, vendor simulator, bundled broker), `store/` (the event store under the
application: factories, recorders, the log-following cache). Shared by them: `settings`,
`kafka_io` (consumer, publisher, topics), `orders_out` (the API's orders to Kafka),
`metrics`, `log_setup`, `tracing` (OpenTelemetry spans, off unless configured).
"""
