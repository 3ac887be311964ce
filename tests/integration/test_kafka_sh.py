"""`deploy/kafka/kafka.sh` itself, where the fault tests' brokers would only hit a case by chance."""

from __future__ import annotations

from pathlib import Path

from .resilience_support import OwnKafka


def test_a_cluster_id_that_starts_with_a_dash_formats_and_starts(bootstrap: str, tmp_path: Path):
    """One random id in 64 starts with '-' (ids are URL-safe base64), which StorageTool took for an option:
    the start failed with a usage message."""
    kafka = OwnKafka(tmp_path)
    cluster_id = "-uMqVD_5RDqLJIOTB1lszw"
    try:
        kafka.run("start", KAFKA_CLUSTER_ID=cluster_id)
        assert f"cluster.id={cluster_id}" in (tmp_path / "data/meta.properties").read_text().splitlines()
    finally:
        kafka.discard()
