"""Development aids, never on the production path: the demo and its order stream, the vendor
simulator and the bundled Kafka-compatible broker (Tansu)."""
