# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STACK  := $(PYTHON) deploy/local/stack.py
# The operator's settings (Kafka user admin, the database owner): the local stack's, unless
# KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL / CLOUDWALLET_KAFKA_* are set. The demo, the benchmark
# and the fuzzer create topics and databases and read the DLQ, so they run as the operator.
# The processor they start logs in as itself (CLOUDWALLET_PROCESSOR_ENV_FILE).
WITH_ENV = eval "$$($(STACK) env --as admin)" && export CLOUDWALLET_PROCESSOR_ENV_FILE=$$($(STACK) env-file --as processor) &&

.PHONY: install up down status test unit demo bench bench-long fuzz schemas asyncapi clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# The stack, then the ACLs of processor/stream/acls.py for the default topics (as the operator).
up: install
	$(STACK) up
	$(WITH_ENV) $(PY) -m processor.cli kafka-acls --apply > /dev/null

down:
	$(STACK) down

status:
	$(STACK) status

test: install up
	$(VENV)/bin/pytest -q -ra

unit: install
	$(VENV)/bin/pytest -q tests/unit

demo: install up
	$(WITH_ENV) $(PY) -m processor.demo

bench: install up
	$(WITH_ENV) $(PY) -m bench

# The cost as data grows: 1,000,000 transfers over 100,000 wallets, the last tenth's rate
# against the first's (late_vs_early); about half an hour here.
bench-long: install up
	$(WITH_ENV) $(PY) -m bench --only uniform --transactions 1000000 --wallets 100000 --output bench/results/long.json

fuzz: install up
	$(WITH_ENV) $(PY) -m fuzz $(FUZZ_ARGS)

schemas: install
	$(PY) -m schemas.jsonschema schemas/json

asyncapi: install
	$(PY) -m processor.stream.asyncapi docs/asyncapi.json

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
