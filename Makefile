# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo demo-serve test test-keycloak install bench bench-hot bench-vendor bench-inbox bench-hostile bench-bulk bench-group storm schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/coterm demo

# The demo, then the dashboard with a live processor behind it: start work yourself (Ctrl-C stops)
demo-serve: $(STAMP)
	$(VENV)/bin/coterm demo --serve $(ARGS)

# The kill storm (marked `storm`, two minutes of faults at its own pace) runs in a pytest of its
# own beside four xdist workers for the rest, both on one Apache Kafka broker started once
# (tests/run_suite.py); the storm's output follows theirs, the ten slowest tests are printed; the
# Keycloak tests run last, alone. Any failing (or collecting no test: exit 5) fails the target.
test: $(STAMP)
	$(VENV)/bin/python -m tests.run_suite

# Only the tests against Keycloak (Maven Central's keycloak-quarkus-dist, fetched and built once
# into ~/.cache/coterm): `make test` runs them too, last.
test-keycloak: $(STAMP)
	$(VENV)/bin/python -m pytest -m keycloak

# The whole pipeline beside a naive baseline; e.g. make bench ARGS="--store postgresql://postgres@127.0.0.1:5432/test"
bench: $(STAMP)
	$(VENV)/bin/python -m bench.pipeline $(ARGS)

# CPU per transfer of each process's work and statements per transfer, in one process on the same
# work every run (the lever-by-lever measure); ARGS="--prefill 1000000" adds a store with history
bench-hot: $(STAMP)
	$(VENV)/bin/python -m bench.hot_path $(ARGS)

# CPU of one vendor call on coterm's side: the vendor client against the simulator (its own process)
bench-vendor: $(STAMP)
	$(VENV)/bin/python -m bench.vendor_call $(ARGS)

# The inbox and outbox alone, in-process, on the demo stream (no broker, no HTTP)
bench-inbox: $(STAMP)
	$(VENV)/bin/python -m bench.throughput

# Inbox messages/s on the fuzz tests' hostile mix against clean input
bench-hostile: $(STAMP)
	$(VENV)/bin/python -m bench.hostile $(ARGS)

# A bulk migration of N customers through the inbox: first decisions and scheduled days
bench-bulk: $(STAMP)
	$(VENV)/bin/python -m bench.bulk $(ARGS)

# A consumer group through kills, restarts and pauses, by consumer setting (static membership or
# not, session timeout, assignor), on Apache Kafka; ARGS="--broker tansu" for the bundled broker
bench-group: $(STAMP)
	$(VENV)/bin/python -m bench.group_recovery $(ARGS)

# Storm on PostgreSQL and a 3-broker Apache Kafka cluster: 3 processors, 2,000 transfers (halves on
# different partitions) + 300 migrations, 50 SIGKILLs, 4 SIGSTOP pauses, a 20 s database outage, two
# broker kills (the last the active controller), then the same stream without faults
# (--baseline); also the vendor-outage tests with a 30 s outage. ARGS go to the storm (e.g. --kills 10).
storm: $(STAMP)
	$(VENV)/bin/python -m tests.storm --baseline $(ARGS)
	$(VENV)/bin/python -m tests.storm --throttle-share 0.3 --transfers 1000 --migrations 100 --kills 10 --pauses 2 --outage 0 --broker-kills 0
	COTERM_OUTAGE_S=30 $(VENV)/bin/python -m pytest -q tests/integration/test_vendor_outage.py

schemas: $(STAMP)
	$(VENV)/bin/python -m contracts.schemas

clean:
	rm -rf $(VENV) var
