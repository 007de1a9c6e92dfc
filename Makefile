# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test install bench bench-inbox bench-hostile schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/coterm demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest

# The whole pipeline beside a naive baseline; e.g. make bench ARGS="--store postgresql://postgres@127.0.0.1:5432/test"
bench: $(STAMP)
	$(VENV)/bin/python -m bench.pipeline $(ARGS)

# The inbox and outbox alone, in-process, on the demo stream (no broker, no HTTP)
bench-inbox: $(STAMP)
	$(VENV)/bin/python -m bench.throughput

# Inbox messages/s on the fuzz tests' hostile mix against clean input
bench-hostile: $(STAMP)
	$(VENV)/bin/python -m bench.hostile $(ARGS)

schemas: $(STAMP)
	$(VENV)/bin/python -m contracts.schemas

clean:
	rm -rf $(VENV) var
