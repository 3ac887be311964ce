"""Both Kafka clients get the same connection and security settings, each in its own library's names."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import KafkaSettings, parse_config
from monitor.errors import ConfigError
from monitor.kafka.client import client_options
from monitor.kafka.confluent import librdkafka_options

SECURE = KafkaSettings(
    bootstrap_servers="b1:9093,b2:9093",
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="monitor",
    sasl_password="s3cret",
    ssl_cafile=Path("/etc/kafka/ca.pem"),
    ssl_certfile=Path("/etc/kafka/client.pem"),
    ssl_keyfile=Path("/etc/kafka/client.key"),
    ssl_key_password="k3y",
    ssl_check_hostname=False,
)


def test_librdkafka_gets_what_kafka_python_gets() -> None:
    python, rdkafka = client_options(SECURE), librdkafka_options(SECURE)
    assert rdkafka["bootstrap.servers"] == ",".join(python["bootstrap_servers"])
    assert rdkafka["security.protocol"] == "sasl_ssl" and python["security_protocol"] == "SASL_SSL"
    pairs = {
        "sasl_mechanism": "sasl.mechanism",
        "sasl_plain_username": "sasl.username",
        "sasl_plain_password": "sasl.password",
        "ssl_cafile": "ssl.ca.location",
        "ssl_certfile": "ssl.certificate.location",
        "ssl_keyfile": "ssl.key.location",
        "ssl_password": "ssl.key.password",
    }
    assert {mine: rdkafka[theirs] for mine, theirs in pairs.items()} == {mine: python[mine] for mine in pairs}
    assert rdkafka["ssl.endpoint.identification.algorithm"] == "none"
    assert python["ssl_check_hostname"] is False


def test_plaintext_sends_no_tls_or_sasl_settings() -> None:
    options = librdkafka_options(KafkaSettings())
    assert options["security.protocol"] == "plaintext"
    assert not [k for k in options if k.startswith(("ssl.", "sasl."))]


def test_kafka_client_is_one_of_the_two() -> None:
    assert parse_config({}, environ={}).kafka.client == "kafka-python"
    assert parse_config({"kafka": {"client": "confluent-kafka"}}, environ={}).kafka.client == "confluent-kafka"
    with pytest.raises(ConfigError, match=r"kafka\.client: .*librdkafka"):
        parse_config({"kafka": {"client": "librdkafka"}}, environ={})
