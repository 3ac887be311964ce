# Two commands on a fresh machine: `make demo` (the whole pipeline on a local Kafka) and `make test`.
# Needs Python 3.11+, Java 17 and Maven; everything else is installed by these targets: the venv, and
# for the tests the Debian packages they run (prometheus, alertmanager, kcat; `make system-deps`,
# apt-get via sudo when not root, never starting their system services). `make lint`: ruff and the
# import contracts (import-linter, configured in pyproject.toml).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
KAFKA  := deploy/kafka/kafka.sh
STAMP  := $(VENV)/.installed

.PHONY: venv system-deps demo test unit integration lint kafka-start kafka-stop clean

venv: $(STAMP)

# Reinstall when the dependencies change; pip's cache keeps the large torch wheel after the first time.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Before venv where both are needed: it also installs python3-venv on a lean image. Quiet and quick
# when everything is installed; see the script for what and why.
system-deps:
	@bash deploy/system-packages.sh

kafka-start:
	@if [ -z "$$KAFKA_BOOTSTRAP" ]; then bash $(KAFKA) start; else echo "using Kafka at $$KAFKA_BOOTSTRAP"; fi

kafka-stop:
	bash $(KAFKA) stop

demo: venv kafka-start
	MONITOR_KAFKA_BOOTSTRAP_SERVERS=$${KAFKA_BOOTSTRAP:-127.0.0.1:9092} $(BIN)/monitor demo

test: system-deps venv kafka-start
	$(BIN)/python -m pytest

# Not only the core: some unit tests run promtool and openssl.
unit: system-deps venv
	$(BIN)/python -m pytest tests/unit

integration: system-deps venv kafka-start
	$(BIN)/python -m pytest tests/integration

lint: venv
	$(BIN)/ruff check monitor tests bench
	$(BIN)/ruff format --check monitor tests bench
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) out .pytest_cache
