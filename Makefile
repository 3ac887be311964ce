# Two commands on a fresh machine: `make demo` (the whole pipeline on a local Kafka) and `make test`.
# Needs Python 3.11+, Java 17 and Maven; everything else is installed by these targets.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
KAFKA  := deploy/kafka/kafka.sh
STAMP  := $(VENV)/.installed

.PHONY: venv demo test unit integration lint kafka-start kafka-stop clean

venv: $(STAMP)

# Reinstall when the dependencies change; pip's cache keeps the large torch wheel after the first time.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

kafka-start:
	@if [ -z "$$KAFKA_BOOTSTRAP" ]; then bash $(KAFKA) start; else echo "using Kafka at $$KAFKA_BOOTSTRAP"; fi

kafka-stop:
	bash $(KAFKA) stop

demo: venv kafka-start
	MONITOR_KAFKA_BOOTSTRAP_SERVERS=$${KAFKA_BOOTSTRAP:-127.0.0.1:9092} $(BIN)/monitor demo

test: venv kafka-start
	$(BIN)/python -m pytest

unit: venv
	$(BIN)/python -m pytest tests/unit

integration: venv kafka-start
	$(BIN)/python -m pytest tests/integration

lint: venv
	$(BIN)/ruff check monitor tests
	$(BIN)/ruff format --check monitor tests

clean:
	rm -rf $(VENV) out .pytest_cache
