"""Each producer format, produced by a real client, raises the same alerts as its native-JSON twin.

One synthetic stream is written five ways: natively (our producer), as Influx line protocol and as
Telegraf JSON (kcat, the Debian client), and as prometheus-kafka-adapter JSON (Kafka's console producer).
A daemon per topic scores it with a model trained on the stream's healthy head under both id schemes;
every format must give the alerts its twin gives, with the ids the documented mapping promises.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import yaml
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from monitor.models.store import resolve
from monitor.records import Point, encode_point
from monitor.synthetic import generate, points

from ..producer_formats import influx_line, prometheus_sample, telegraf_metric
from .conftest import ROOT, SPEC, Daemon, TopicReader, produce, wait_for, write_config

NS = 10**9
MESSAGE_END = "\x1e"  # kcat -D: the record separator, since line protocol messages span several lines


def telegraf_id(p: Point) -> Point:
    """The native twin of a Telegraf/Influx metric `cpu,cpu=cpu-total,host=<host> usage_idle=<value>`."""
    tags = {"cpu": "cpu-total", "host": p.labels["host"]}
    return Point(f"cpu,cpu=cpu-total,host={tags['host']}/usage_idle", p.ts, p.values, tags)


def prometheus_id(p: Point) -> Point:
    """The native twin of the sample `node_cpu_usage_idle{cpu="cpu-total",host="<host>"}`."""
    labels = {"cpu": "cpu-total", "host": p.labels["host"]}
    return Point(f'node_cpu_usage_idle{{cpu="cpu-total",host="{labels["host"]}"}}', p.ts, p.values, labels)


def stream(first: int = 0, last: int | None = None) -> list[Point]:
    values, _ = generate(SPEC)
    return list(points(SPEC, values, first, last))


def by_step(ps: list[Point]) -> Iterator[list[Point]]:
    for i in range(0, len(ps), SPEC.series):
        yield ps[i : i + SPEC.series]


@pytest.fixture(scope="module")
def twin_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained by `monitor train` on the healthy head under both id schemes."""
    from monitor.cli import main

    work = tmp_path_factory.mktemp("twin-model")
    head = stream(0, SPEC.healthy)
    data = work / "healthy.jsonl"
    data.write_bytes(b"".join(encode_point(twin(p)) + b"\n" for twin in (telegraf_id, prometheus_id) for p in head))
    config = write_config(work / "train.yaml", {"kafka": {}}, work / "model")
    assert main(["--config", str(config), "train", "--input", str(data), "--no-progress", "--epochs", "15"]) == 0
    return work / "model"


def write_influx(path: Path, ps: list[Point]) -> None:
    """One message per time step with a line per host; a comment and a string field that must be skipped."""
    messages = []
    for step in by_step(ps):
        lines = [
            influx_line(
                "cpu",
                {"host": p.labels["host"], "cpu": "cpu-total"},
                {"usage_idle": p.values["value"], "state": "ok"},
                int(p.ts) * NS,
            )
            for p in step
        ]
        messages.append("\n".join(["# telegraf outputs.kafka, data_format = influx", *lines]))
    path.write_text(MESSAGE_END.join(messages))


def write_telegraf(path: Path, ps: list[Point]) -> None:
    """Even steps as one batch message (`{"metrics": [...]}`), odd steps as one message per metric keyed by host."""
    lines = []
    for n, step in enumerate(by_step(ps)):
        metrics = [
            telegraf_metric(
                "cpu", {"host": p.labels["host"], "cpu": "cpu-total"}, {"usage_idle": p.values["value"]}, p.ts
            )
            for p in step
        ]
        if n % 2 == 0:
            lines.append(orjson.dumps({"metrics": metrics}).decode())
        else:
            lines.extend(f"{m['tags']['host']}\t{orjson.dumps(m).decode()}" for m in metrics)
    path.write_text("\n".join(lines) + "\n")


def write_prometheus(path: Path, ps: list[Point]) -> None:
    labels = [{"cpu": "cpu-total", "host": p.labels["host"]} for p in ps]
    samples = [
        prometheus_sample("node_cpu_usage_idle", lab, p.values["value"], p.ts)
        for p, lab in zip(ps, labels, strict=True)
    ]
    path.write_text("".join(f"{lab['host']}\t{s.decode()}\n" for lab, s in zip(labels, samples, strict=True)))


def kcat(bootstrap: str, topic: str, path: Path, delimiter: str = "\n") -> None:
    cmd = ["kcat", "-P", "-b", bootstrap, "-t", topic, "-p", "0", "-K", "\t", "-D", delimiter, "-l", str(path)]
    subprocess.run(cmd, check=True, timeout=120)


def console_producer(bootstrap: str, topic: str, path: Path) -> None:
    tool = [str(ROOT / "deploy/kafka/kafka.sh"), "tool", "org.apache.kafka.tools.ConsoleProducer"]
    args = ["--bootstrap-server", bootstrap, "--topic", topic, "--property", "parse.key=true"]
    with path.open("rb") as stdin:
        subprocess.run(["bash", *tool, *args], stdin=stdin, check=True, timeout=180, capture_output=True)


def record_count(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


class Run:
    """One topic in one format, filled by its producer; `alerts` runs a daemon over it.

    The daemons run one after the other: four at once on two cores starve them enough that the consumer
    group sometimes drops a member that then never fetches (reported; not a format matter).
    """

    def __init__(self, bootstrap: str, tmp: Path, model: Path, fmt: str, fill: Callable[[str], None]) -> None:
        tag = f"{fmt}-{uuid.uuid4().hex[:8]}"
        self.bootstrap, self.topic, self.alerts_topic = bootstrap, f"it-fmt-{tag}", f"it-fmt-alerts-{tag}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(self.topic, 1, 1)])
        admin.close()
        fill(self.topic)
        self.messages = record_count(bootstrap, self.topic)
        kafka = {"metrics_topic": self.topic, "alert_topic": self.alerts_topic, "group_id": f"it-fmt-group-{tag}"}
        config = write_config(
            tmp / f"{fmt}.yaml", {"kafka": {**kafka, "dead_letter_topic": f"it-fmt-dlq-{tag}"}}, model
        )
        doc = yaml.safe_load(config.read_text())
        config.write_text(yaml.safe_dump({**doc, "input": {"format": fmt}}))
        self.config, self.log = config, tmp / f"{fmt}.log"

    def alerts(self) -> list[dict]:
        """Run the daemon until every message was decoded without a rejection, stop it (SIGTERM flushes),
        and read the alerts it published."""
        daemon = Daemon(self.config, self.bootstrap, self.log)
        try:
            wait_for(lambda: daemon.metric_sum("monitor_messages_total") >= self.messages, 120, self.topic, daemon)
            assert daemon.metric_sum("monitor_messages_total", 'outcome="ok"') == self.messages, daemon.output()[-2000:]
            assert daemon.stop() == 0
        finally:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
        expected = record_count(self.bootstrap, self.alerts_topic)
        reader = TopicReader(self.bootstrap, self.alerts_topic)
        reader.read_until(lambda records: len(records) >= expected, timeout=30)
        alerts = reader.values()
        reader.close()
        return alerts


def comparable(alerts: list[dict]) -> list[str]:
    """Alerts without score and threshold (compared apart: batch shapes may move their last digits)."""
    kept = ({k: v for k, v in a.items() if k not in ("score", "threshold")} for a in alerts)
    return sorted(orjson.dumps(a, option=orjson.OPT_SORT_KEYS).decode() for a in kept)


def assert_same_alerts(got: list[dict], want: list[dict]) -> None:
    assert comparable(got) == comparable(want)
    order = sorted(want, key=lambda a: (a["alert_id"], a["status"]))
    for a, b in zip(sorted(got, key=lambda a: (a["alert_id"], a["status"])), order, strict=True):
        assert a["score"] == pytest.approx(b["score"], rel=1e-4, abs=1e-6)
        assert a["threshold"] == pytest.approx(b["threshold"], rel=1e-4, abs=1e-6)


def test_every_producer_format_raises_the_alerts_of_its_native_twin(bootstrap, twin_model, tmp_path):
    ps = stream()
    native_messages = [
        (p.series.encode(), encode_point(p)) for twin in (telegraf_id, prometheus_id) for p in map(twin, ps)
    ]

    def file_for(name: str, write: Callable[[Path, list[Point]], None]) -> Path:
        path = tmp_path / name
        write(path, ps)
        return path

    influx, telegraf, prom = (
        file_for("influx.txt", write_influx),
        file_for("telegraf.jsonl", write_telegraf),
        file_for("prometheus.tsv", write_prometheus),
    )
    runs = {
        "json": Run(bootstrap, tmp_path, twin_model, "json", lambda t: produce(bootstrap, t, native_messages)),
        "influx": Run(bootstrap, tmp_path, twin_model, "influx", lambda t: kcat(bootstrap, t, influx, MESSAGE_END)),
        "telegraf_json": Run(bootstrap, tmp_path, twin_model, "telegraf_json", lambda t: kcat(bootstrap, t, telegraf)),
        "prometheus_adapter": Run(
            bootstrap, tmp_path, twin_model, "prometheus_adapter", lambda t: console_producer(bootstrap, t, prom)
        ),
    }
    assert runs["influx"].messages == SPEC.points  # several lines per message: one message per time step
    alerts = {fmt: run.alerts() for fmt, run in runs.items()}

    native = alerts["json"]
    telegraf_twins = [a for a in native if a["series"].startswith("cpu,")]
    prometheus_twins = [a for a in native if a["series"].startswith("node_cpu_usage_idle{")]
    assert len(telegraf_twins) + len(prometheus_twins) == len(native)
    _, anomalies = generate(SPEC)
    host_of = {a.series: a.series.split("/")[0] for a in anomalies}
    for twins in (telegraf_twins, prometheus_twins):
        firing_hosts = {a["labels"]["host"] for a in twins if a["status"] == "firing"}
        assert set(host_of.values()) <= firing_hosts, "every injected anomaly must fire under both id schemes"

    assert_same_alerts(alerts["influx"], telegraf_twins)
    assert_same_alerts(alerts["telegraf_json"], telegraf_twins)
    assert_same_alerts(alerts["prometheus_adapter"], prometheus_twins)


@pytest.mark.parametrize("fmt", ["json", "influx", "telegraf_json", "prometheus_adapter"])
def test_train_from_a_topic_decodes_the_configured_format_and_selects_by_the_points_time(
    bootstrap, tmp_path, monkeypatch, fmt
):
    """A Telegraf user's path: the healthy head produced by the format's own client, then `monitor train
    --topic` with `input.format` set. --start/--end name data times long before the records were appended,
    so only selection by the point's own time finds them, and only the points in range."""
    from monitor.cli import main

    monkeypatch.setenv("MONITOR_KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    head, twin = stream(0, SPEC.healthy), {"prometheus_adapter": prometheus_id}.get(fmt, telegraf_id)
    fills: dict[str, Callable[[str], None]] = {
        "json": lambda t: produce(bootstrap, t, [(p.series.encode(), encode_point(twin(p))) for p in head]),
        "influx": lambda t: (write_influx(tmp_path / "m", head), kcat(bootstrap, t, tmp_path / "m", MESSAGE_END)),
        "telegraf_json": lambda t: (write_telegraf(tmp_path / "m", head), kcat(bootstrap, t, tmp_path / "m")),
        "prometheus_adapter": lambda t: (
            write_prometheus(tmp_path / "m", head),
            console_producer(bootstrap, t, tmp_path / "m"),
        ),
    }
    run = Run(bootstrap, tmp_path, tmp_path / "store", fmt, fills[fmt])
    first, last = 100, 300
    start, end = (SPEC.start_ts + SPEC.step_s * step for step in (first, last))
    args = ["--topic", run.topic, "--start", str(start), "--end", str(end), "--epochs", "1", "--no-progress"]
    assert main(["--config", str(run.config), "train", *args]) == 0

    metadata = orjson.loads((resolve(tmp_path / "store") / "metadata.json").read_bytes())
    assert metadata["data_range"]["points"] == SPEC.series * (last - first)
    assert metadata["data_range"]["source"].endswith("by point time")
    assert metadata["data_range"]["series"] == SPEC.series
    assert (metadata["data_range"]["start"], metadata["data_range"]["end"]) == (start, end - SPEC.step_s)
