"""monitor.config: defaults, the repo's config.yaml, one-line errors naming the key path and value, env overrides."""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from pathlib import Path

import pytest
import yaml

from monitor.config import KafkaSettings, load_config, parse_config
from monitor.engine.alerting import AlertSettings
from monitor.engine.detector import DetectorSettings
from monitor.engine.threshold import ThresholdSettings
from monitor.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
REPO_CONFIG = REPO / "config.yaml"


def config_error(doc, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(doc, environ={}, **kwargs)
    return str(info.value)


def with_detector(**fields) -> dict:
    return {"detectors": [{"name": "default", **fields}]}


def test_defaults_load_from_an_empty_document():
    for doc in ({}, None):
        config = parse_config(doc, environ={})
        assert config.kafka == KafkaSettings()
        [detector] = config.detectors
        assert detector.settings == DetectorSettings()
        assert detector.settings.threshold == ThresholdSettings()
        assert detector.settings.alerting == AlertSettings()
        assert config.input_format == "json"
        assert config.max_message_bytes == 1_048_576
        assert (config.listen_host, config.listen_port) == ("127.0.0.1", 9308)


def test_repo_config_loads():
    config = load_config(REPO_CONFIG, environ={})
    assert config.source == str(REPO_CONFIG)
    assert config.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert config.kafka.metrics_topic == "metrics"
    assert config.kafka.sasl_password is None
    [detector] = config.detectors
    assert detector.settings.name == "default"
    assert detector.settings.features == ("value",)
    assert (detector.settings.window, detector.settings.stride) == (32, 1)
    assert detector.settings.threshold.k == 6.0
    assert detector.settings.alerting.for_windows == 1
    assert detector.model.path == REPO / "models" / "default"
    assert config.detector("default") is detector


def test_repo_config_matches_the_defaults():
    """config.yaml documents the defaults; a drift between them is a doc bug."""
    from_file = load_config(REPO_CONFIG, environ={})
    defaults = parse_config({}, base_dir=REPO, environ={})
    assert from_file.kafka == defaults.kafka
    assert from_file.detectors == defaults.detectors


def test_values_are_read():
    doc = {
        "kafka": {"bootstrap_servers": "k1:9092,k2:9092", "group_id": "g", "max_poll_records": 10},
        "exporter": {"listen": "0.0.0.0:9400", "max_series": 5},
        "detectors": [
            {
                "name": "cpu",
                "series": "web-*/cpu",
                "features": ["cpu", "mem"],
                "window": 64,
                "stride": 64,
                "threshold": {"warmup": 0, "history": 8, "k": 2.5, "minimum": 0.1},
                "alerting": {
                    "for": 1,
                    "resolve_after": 7,
                    "critical_ratio": 3,
                    "confirm_after": 5,
                    "confirm_ratio": 1.2,
                },
            }
        ],
    }
    config = parse_config(doc, environ={})
    assert config.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert config.kafka.max_poll_records == 10
    assert (config.listen_host, config.listen_port, config.exporter_max_series) == ("0.0.0.0", 9400, 5)
    s = config.detectors[0].settings
    assert (s.name, s.series, s.features, s.window, s.stride) == ("cpu", "web-*/cpu", ("cpu", "mem"), 64, 64)
    assert s.threshold == ThresholdSettings(warmup=0, history=8, k=2.5, minimum=0.1)
    assert s.alerting == AlertSettings(
        for_windows=1, resolve_after=7, critical_ratio=3.0, confirm_after=5, confirm_ratio=1.2
    )


def test_window_error_is_exactly_one_line():
    message = config_error(with_detector(window="abc"))
    assert message == 'config.yaml: detectors[0].window: must be an integer from 8 to 4096, got "abc"'


@pytest.mark.parametrize(
    ("doc", "path", "shown"),
    [
        (with_detector(window=4), "detectors[0].window", "4"),
        (with_detector(window=5000), "detectors[0].window", "5000"),
        (with_detector(window=True), "detectors[0].window", "True"),
        (with_detector(window=32.5), "detectors[0].window", "32.5"),
        (with_detector(window=None), "detectors[0].window", "null"),
        (with_detector(window=32, stride=64), "detectors[0].stride", "64"),
        (with_detector(stride=0), "detectors[0].stride", "0"),
        (with_detector(threshold={"k": -1}), "detectors[0].threshold.k", "-1"),
        (with_detector(threshold={"k": "high"}), "detectors[0].threshold.k", '"high"'),
        (with_detector(threshold={"history": 2}), "detectors[0].threshold.history", "2"),
        (with_detector(threshold={"settle": 1.5}), "detectors[0].threshold.settle", "1.5"),
        (with_detector(threshold={"learn_within": -1}), "detectors[0].threshold.learn_within", "-1"),
        (with_detector(alerting={"for": 0}), "detectors[0].alerting.for", "0"),
        (with_detector(alerting={"critical_ratio": 0.5}), "detectors[0].alerting.critical_ratio", "0.5"),
        (with_detector(alerting={"confirm_after": 0}), "detectors[0].alerting.confirm_after", "0"),
        (with_detector(alerting={"confirm_ratio": 0.9}), "detectors[0].alerting.confirm_ratio", "0.9"),
        (with_detector(features=[]), "detectors[0].features", "[]"),
        (with_detector(features="value"), "detectors[0].features", '"value"'),
        (with_detector(features=["cpu", "cpu"]), "detectors[0].features", "['cpu', 'cpu']"),
        (with_detector(name=""), "detectors[0].name", '""'),
        (with_detector(model={"kind": "transformer"}), "detectors[0].model.kind", '"transformer"'),
        (with_detector(threshold=[1]), "detectors[0].threshold", "[1]"),
        ({"detectors": [{}, "cpu"]}, "detectors[1]", '"cpu"'),
        ({"detectors": []}, "detectors", "[]"),
        ({"detectors": {"name": "x"}}, "detectors", "{'name': 'x'}"),
        ({"kafka": {"max_poll_records": "many"}}, "kafka.max_poll_records", '"many"'),
        ({"kafka": {"auto_offset_reset": "middle"}}, "kafka.auto_offset_reset", '"middle"'),
        ({"kafka": {"security_protocol": "TLS"}}, "kafka.security_protocol", '"TLS"'),
        ({"kafka": {"bootstrap_servers": 9092}}, "kafka.bootstrap_servers", "9092"),
        ({"kafka": ["a"]}, "kafka", "['a']"),
        ({"exporter": {"listen": "nohost"}}, "exporter.listen", '"nohost"'),
        ({"exporter": {"listen": "host:99999"}}, "exporter.listen", '"host:99999"'),
        ({"input": {"format": "avro"}}, "input.format", '"avro"'),
        ({"input": {"max_message_bytes": 1}}, "input.max_message_bytes", "1"),
        ({"scoring": {"threads": 0}}, "scoring.threads", "0"),
        ([1, 2], "(top level)", "[1, 2]"),
    ],
)
def test_bad_value_error_names_path_and_value(doc, path, shown):
    message = config_error(doc)
    assert "\n" not in message
    assert message.startswith(f"config.yaml: {path}: "), message
    assert message.endswith(f"got {shown}"), message


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"kafkaa": {}}, "kafkaa"),
        ({"kafka": {"bootstrap": "x:1"}}, "kafka.bootstrap"),
        (with_detector(threshold={"kk": 4}), "detectors[0].threshold.kk"),
        (with_detector(alerting={"for_windows": 2}), "detectors[0].alerting.for_windows"),
        (with_detector(windw=32), "detectors[0].windw"),
        (with_detector(model={"pth": "m"}), "detectors[0].model.pth"),
        (with_detector(training={"epoch": 3}), "detectors[0].training.epoch"),
        ({"exporter": {"port": 1}}, "exporter.port"),
    ],
)
def test_unknown_key_error_names_its_path(doc, path):
    message = config_error(doc)
    assert "\n" not in message
    assert message.startswith(f"config.yaml: {path}: unknown key"), message


def test_error_uses_the_source_name():
    assert config_error(with_detector(window="abc"), source="prod.yaml").startswith("prod.yaml: detectors[0].window")


def test_duplicate_detector_names_are_refused():
    message = config_error({"detectors": [{"name": "cpu", "series": "a*"}, {"name": "cpu", "series": "b*"}]})
    assert message.startswith("config.yaml: detectors: ")
    assert "unique" in message and "cpu" in message


def test_second_detector_errors_name_its_index():
    message = config_error({"detectors": [{"name": "a"}, {"name": "b", "stride": 100}]})
    assert message.startswith("config.yaml: detectors[1].stride: ")


def test_sasl_password_in_the_file_is_refused_without_echoing_it():
    message = config_error({"kafka": {"sasl_password": "hunter2-secret"}})
    assert message.startswith("config.yaml: kafka.sasl_password: ")
    assert "MONITOR_KAFKA_SASL_PASSWORD" in message
    assert "hunter2-secret" not in message


def test_env_overrides_win():
    environ = {
        "MONITOR_KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9093,kafka-2:9093",
        "MONITOR_KAFKA_SASL_USERNAME": "monitor",
        "MONITOR_KAFKA_SASL_PASSWORD": "s3cret",
    }
    config = parse_config({"kafka": {"bootstrap_servers": "file:9092", "sasl_username": "file-user"}}, environ=environ)
    assert config.kafka.bootstrap_servers == "kafka-1:9093,kafka-2:9093"
    assert config.kafka.sasl_username == "monitor"
    assert config.kafka.sasl_password == "s3cret"


def test_empty_env_override_is_ignored():
    config = parse_config(
        {"kafka": {"bootstrap_servers": "file:9092"}}, environ={"MONITOR_KAFKA_BOOTSTRAP_SERVERS": ""}
    )
    assert config.kafka.bootstrap_servers == "file:9092"


def test_process_environment_is_the_default(monkeypatch):
    monkeypatch.setenv("MONITOR_KAFKA_BOOTSTRAP_SERVERS", "from-env:9092")
    assert parse_config({}).kafka.bootstrap_servers == "from-env:9092"
    assert load_config(REPO_CONFIG).kafka.bootstrap_servers == "from-env:9092"


def test_repr_never_shows_the_password():
    config = parse_config({}, environ={"MONITOR_KAFKA_SASL_PASSWORD": "hunter2-secret"})
    assert config.kafka.sasl_password == "hunter2-secret"
    assert "hunter2-secret" not in repr(config.kafka)
    assert "hunter2-secret" not in str(config.kafka)
    assert "hunter2-secret" not in repr(config)


def test_config_is_frozen():
    config = parse_config({}, environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.kafka.bootstrap_servers = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.input_format = "x"  # type: ignore[misc]


def test_unknown_detector_name():
    config = parse_config({}, environ={})
    with pytest.raises(ConfigError, match="nope"):
        config.detector("nope")


def write_config(directory: Path, doc: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_relative_model_path_is_resolved_against_the_config_directory(tmp_path):
    path = write_config(tmp_path / "etc" / "monitor", with_detector(model={"path": "artifacts/cpu"}))
    config = load_config(path, environ={})
    assert config.detectors[0].model.path == tmp_path / "etc" / "monitor" / "artifacts" / "cpu"


def test_absolute_model_path_is_kept(tmp_path):
    absolute = tmp_path / "models" / "x"
    path = write_config(tmp_path / "etc", with_detector(model={"path": str(absolute)}))
    assert load_config(path, environ={}).detectors[0].model.path == absolute


def test_load_config_errors_name_the_file(tmp_path):
    path = write_config(tmp_path, with_detector(window="abc"))
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == f'{path}: detectors[0].window: must be an integer from 8 to 4096, got "abc"'


def test_empty_file_gives_defaults(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("# nothing here\n")
    assert load_config(path, environ={}).detectors[0].settings == DetectorSettings()


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_file_is_a_config_error(tmp_path, kind):
    path = tmp_path / "config.yaml"
    if kind == "directory":
        path.mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value).startswith(f"{path}: cannot read")
    assert "\n" not in str(info.value)


def test_invalid_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("kafka: [1,\ndetectors: 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value).startswith(f"{path}: not valid YAML")


def test_invalid_yaml_error_is_one_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("kafka: [1,\ndetectors: 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert "\n" not in str(info.value)
    assert "line 1" in str(info.value) or "line 2" in str(info.value) or "line 3" in str(info.value)


def test_parse_config_does_not_mutate_its_input():
    doc = with_detector(window=64, threshold={"k": 3})
    before = copy.deepcopy(doc)
    parse_config(doc, environ={})
    assert doc == before


@pytest.mark.parametrize(
    ("scoring", "message"),
    [
        ({"device": "tpu"}, 'scoring.device: must be cpu, cuda or cuda:N, got "tpu"'),
        ({"device": "cuda", "backend": "onnx"}, "scoring.device: cuda needs scoring.backend torch"),
    ],
)
def test_scoring_device_is_checked_without_loading_torch(scoring: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({"scoring": scoring}, environ={})


def test_scoring_device_takes_cuda_and_an_index() -> None:
    assert parse_config({}, environ={}).scoring_device == "cpu"
    assert parse_config({"scoring": {"device": "cuda:1"}}, environ={}).scoring_device == "cuda:1"


def test_the_feedback_topic_follows_the_alert_topic_unless_set():
    assert parse_config({"kafka": {"alert_topic": "pages"}}, environ={}).kafka.feedback_topic == "pages-feedback"
    doc = {"kafka": {"alert_topic": "pages", "feedback_topic": "verdicts"}}
    assert parse_config(doc, environ={}).kafka.feedback_topic == "verdicts"
    assert parse_config({}, environ={}).detectors[0].settings.alerting.precision_verdicts == 100


def test_scoring_threads_auto_follows_the_host(monkeypatch):
    import monitor.config as config_module

    for cpus, expected in ((1.0, 1), (1.5, 1), (2.0, 2), (16.0, 2)):
        monkeypatch.setattr(config_module, "usable_cpus", lambda cpus=cpus: cpus)
        config = parse_config({})
        assert (config.scoring_threads, config.training_threads) == (expected, 1)
    explicit = parse_config({"scoring": {"threads": 3}})
    assert (explicit.scoring_threads, explicit.training_threads) == (3, 3)


def test_scoring_threads_refuses_a_word_other_than_auto():
    message = config_error({"scoring": {"threads": "fast"}})
    assert message == 'config.yaml: scoring.threads: must be auto or an integer from 1 to 64, got "fast"'


def test_usable_cpus_reads_the_cgroup_quota(tmp_path):
    from monitor.config.host import usable_cpus

    mask = float(len(os.sched_getaffinity(0)))
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("50000 100000\n")
    assert usable_cpus(cpu_max) == min(mask, 0.5)
    cpu_max.write_text("max 100000\n")
    assert usable_cpus(cpu_max) == mask
    assert usable_cpus(tmp_path / "missing") == mask
