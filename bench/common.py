"""Shared set-up for the benchmarks: a broker, a model of the benchmark's size, a stream on a topic.

Benchmarks print figures; they are never part of the tests. Every ratio they print compares two figures
measured in the same run on the same machine.
"""

from __future__ import annotations

import atexit
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.config.model import ModelSettings  # noqa: E402
from monitor.engine.threshold import ThresholdSettings  # noqa: E402
from monitor.records import encode_point  # noqa: E402
from monitor.synthetic import StreamSpec, generate, points  # noqa: E402

RUN = uuid.uuid4().hex[:6]
"""Names every topic of this run (`fresh`), so that its exit removes them."""


def bootstrap() -> str:
    """The broker `KAFKA_BOOTSTRAP` names, else the local one `deploy/kafka/kafka.sh` starts; the topics the
    run makes are deleted when it exits (`BENCH_KEEP_TOPICS=1` keeps them)."""
    server = os.environ.get("KAFKA_BOOTSTRAP")
    if not server:
        subprocess.run(["bash", str(ROOT / "deploy/kafka/kafka.sh"), "start"], check=True, stdout=subprocess.DEVNULL)
        server = "127.0.0.1:9092"
    atexit.register(_remove_topics, server)
    return server


def _remove_topics(server: str) -> None:
    """The run's topics, its daemons' changelogs among them: a sweep of 100,000 series leaves 1.5 GB in the
    broker's log directory, and benchmark after benchmark filled it with gigabytes nobody reads."""
    if os.environ.get("BENCH_KEEP_TOPICS"):
        return
    try:
        admin = KafkaAdminClient(bootstrap_servers=server)
        ours = [t for t in admin.list_topics() if t.startswith(f"bench-{RUN}-")]
        if ours:
            admin.delete_topics(ours)
        admin.close()
    except KafkaError as exc:
        print(f"the run's topics (bench-{RUN}-*) were not deleted: {exc}", file=sys.stderr)


def train_small(
    window: int, hidden: int, latent: int, series: int = 8, points_per_series: int = 600, features: int = 1
) -> Path:
    """A real model of the benchmark's size (scoring cost depends on the sizes, not on the fit), otherwise
    as the shipped config.yaml's first detector trains one (its kind, scored and hidden steps: the hidden
    steps' copy is part of every forward pass), for one epoch and without calendar inputs; with
    `features` > 1, of features `f0`, `f1`, ... taken from neighbouring synthetic series. Its folder (where
    some benchmarks also write their streams, gigabytes at 100,000 series) is removed when the benchmark
    exits, also on an error or Ctrl-C."""
    from monitor.config import load_config
    from monitor.models import SeriesData, save_artifact, train_model
    from monitor.training.options import training_options

    spec = StreamSpec(series=series, points=points_per_series, healthy=points_per_series, anomalous_series=0)
    values, _ = generate(spec)
    ts = spec.start_ts + spec.step_s * np.arange(spec.points)
    columns = [[(i + j) % series for j in range(features)] for i in range(series)]
    data = {f"s{i}": SeriesData(ts, values[columns[i]].T) for i in range(series)}
    names = ["value"] if features == 1 else [f"f{j}" for j in range(features)]
    shipped = load_config(ROOT / "config.yaml").detectors[0]
    options = training_options(
        shipped, window=window, hidden=hidden, latent=latent, epochs=1, max_windows=512, calendar="none"
    )
    model, metadata = train_model(data, names, options, progress=False)
    folder = tempfile.mkdtemp(prefix="bench-model-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    out = Path(folder) / "model"
    save_artifact(model, metadata, out)
    return out


def stream_file(spec: StreamSpec, path: Path, first: int = 0, last: int | None = None) -> int:
    """Time steps [first, last) of the stream as `key<TAB>value` lines, for kcat's fast producer; returns the
    number of records."""
    values, _ = generate(spec)
    count = 0
    with path.open("wb") as f:
        for point in points(spec, values, first, last):
            f.write(point.series.encode() + b"\t" + encode_point(point) + b"\n")
            count += 1
    return count


def produce_file(bootstrap: str, topic: str, path: Path, partitions: int = 4, create: bool = True) -> None:
    """Produce the file with kcat (a C client: producing is not what we measure), to a topic created first
    unless `create` is False."""
    if create:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(topic, partitions, 1)])
        admin.close()
    kcat = shutil.which("kcat")
    if kcat is None:
        raise SystemExit("kcat is needed to produce the benchmark stream: apt-get install kcat")
    subprocess.run(
        [kcat, "-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-l", "-z", "lz4", "-X", "linger.ms=50", str(path)],
        check=True,
    )


def consumed(bootstrap: str, topic: str, group: str) -> bool:
    """Whether `group` has committed the end of every partition of `topic` (the daemon is through)."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        committed = admin.list_group_offsets(group)[group]
        admin.close()
        ends = end_offsets(bootstrap, topic)
    except Exception:  # the broker may be away right now: not consumed yet
        return False
    return all(e == 0 or (committed.get(tp) is not None and committed[tp].offset == e) for tp, e in ends.items())


def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    ends = consumer.end_offsets([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()])
    consumer.close()
    return ends


def read_all(bootstrap: str, topic: str) -> list:
    """Every record on `topic` now, from the beginning."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    ends = {tp: e for tp, e in end_offsets(bootstrap, topic).items() if e > 0}
    consumer.assign(list(ends))
    consumer.seek_to_beginning(*ends)
    records: list = []
    while any(consumer.position(tp) < e for tp, e in ends.items()):
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    consumer.close()
    return records


def fresh(name: str) -> str:
    return f"bench-{RUN}-{name}-{uuid.uuid4().hex[:8]}"


def median_rate(run: Callable[[], tuple[int, float]], repeats: int) -> float:
    """Median of `count / seconds` over repeats of `run`."""
    rates = []
    for _ in range(repeats):
        count, seconds = run()
        rates.append(count / seconds)
    return statistics.median(rates)


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    started = time.perf_counter()
    count = fn()
    return count, time.perf_counter() - started


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def steady_after(window: int, stride: int) -> int:
    """Points per series before the steady state: the window full, then the online normalisation's warm-up
    (`online_warmup` windows, one every `stride` points) of series the model never saw, then the thresholds'
    (`warmup` windows), after which every window is also followed by the alert tracker."""
    return window + stride * (ModelSettings().online_warmup + ThresholdSettings().warmup)
