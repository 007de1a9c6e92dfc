"""Scaling out scales, or says why not (issue 19): topics coterm creates get COTERM_TOPIC_PARTITIONS
partitions (default 6); a processor that holds no partition, and an orders topic with fewer
partitions than configured, show in the log, the metrics and /readyz."""

import json
import os
import subprocess
import uuid
from pathlib import Path

from kafka import KafkaConsumer

from processor.dev.broker import BundledBroker, free_port
from processor.dev.vendor_sim import VendorSimulator
from processor.kafka_io import ensure_topics
from tests.e2e.test_cli import COTERM
from tests.e2e.test_metrics import get, sample
from tests.waiting import wait_for


def test_an_idle_member_and_a_narrow_topic_are_reported_and_created_topics_get_six_partitions(
        broker: BundledBroker, vendor: VendorSimulator, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    orders, results = f"narrow-orders-{tag}", f"wide-results-{tag}"
    ensure_topics(broker.bootstrap, [orders], partitions=1)  # made by someone else, before coterm
    env = {**os.environ, "COTERM_KAFKA_BOOTSTRAP": broker.bootstrap, "COTERM_VENDOR_URL": vendor.url,
           "COTERM_TOPIC_ORDERS": orders, "COTERM_TOPIC_RESULTS": results, "COTERM_TOPIC_DEADLETTER": f"dead-{tag}",
           "COTERM_GROUP_ID": f"g-{tag}"}
    env.pop("COTERM_TOPIC_PARTITIONS", None)  # the default
    ports = [free_port(), free_port()]
    logs = [tmp_path / f"p{n}.log" for n in range(2)]
    procs = [subprocess.Popen([*COTERM, "run", "--metrics-port", str(port)], stderr=log.open("w"),
                              env={**env, "COTERM_STORE": str(tmp_path / f"p{n}.sqlite")})
             for n, (port, log) in enumerate(zip(ports, logs))]
    try:
        def held() -> list[float | None]:
            return [sample(get(f"http://127.0.0.1:{port}/metrics")[1], "coterm_orders_partitions_held") for port in ports]

        assert wait_for(lambda: sorted(h for h in held() if h is not None) == [0, 1], 60), held()
        idle = ports[held().index(0)]
        text = get(f"http://127.0.0.1:{idle}/metrics")[1]
        assert sample(text, "coterm_orders_partitions") == 1 and sample(text, "coterm_orders_partitions_configured") == 6
        status, body = wait_for(lambda: (r := get(f"http://127.0.0.1:{idle}/readyz"))[0] == 200 and r, 60)
        warnings = json.loads(body)["warnings"]
        assert any(f"topic {orders} has 1 partitions, fewer than COTERM_TOPIC_PARTITIONS=6" in w for w in warnings)
        assert any(f"this processor holds none of the 1 partitions of {orders}" in w for w in warnings), warnings
        logged = "".join(log.read_text() for log in logs)
        assert logged.count('"event": "partitions.warning"') >= 3  # the narrow topic twice, the idle member once
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
        try:
            assert len(consumer.partitions_for_topic(results) or ()) == 6  # created by coterm
        finally:
            consumer.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
