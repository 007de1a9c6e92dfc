"""The processor: Kafka in, the store in the middle, results and vendor calls out.

Rooms: `consume/` (the consume loop and inbox), `outbox/` (results, the exactly-once vendor
call, leadership, pairing timeout), `cli/` (the `coterm` command), `dev/` (demo, vendor
simulator, bundled broker). Shared by them: `settings`, `store` (opening the event store),
`kafka_io` (consumer, publisher, topics), `orders_out` (the API's orders to Kafka),
`metrics`, `log_setup`.
"""
