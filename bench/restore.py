"""How long a restart and a rebalance take to score every series again, and what the changelog costs.

    python bench/restore.py [--series 10000,100000] [--extra 144]

Per series count, with `monitor run` as users run it (shipped settings, checkpoints on, DEBUG log for
the `scored` lines) on a 4-partition topic:
1. a backlog of `window + extra` points per series; daemon A scores it all; the changelog records and
   bytes (key + value) it wrote, per input point and per second of that run, and the series still
   warming up when it has (0 with the default `extra`: past every warm-up);
2. SIGTERM A, one new point per series, start B: seconds from B's start to `/readyz` and to the new point
   of every series scored, and how many series still warm up;
3. start C in the same group (partitions move from B to C), then one new point per series: seconds from
   C's start to its `/readyz`, from that point's production to every series scored (by B or C), the
   records C skipped as already in a restored state, and the series warming up.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from common import ROOT, bootstrap, fresh, produce_file, table, train_small
from kafka import KafkaConsumer, TopicPartition

from monitor.config.model import ModelSettings
from monitor.engine.threshold import ThresholdSettings
from monitor.records import encode_point
from monitor.synthetic import StreamSpec, generate, points

PARTITIONS = 4
WINDOW = 32
WARMING_UP = ("before_warming_up", "restart_warming_up", "rebalance_warming_up")
"""Series warming up when A has scored the backlog, after B's restart, after C joined (in B and C)."""
SCORED = re.compile(rb"scored detector=\S+ series=(\S+) end=(\S+)")


class Daemon:
    """`monitor run` in a subprocess with its own port and log; `scored()` reads the new `scored` lines."""

    def __init__(self, config: Path, log: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.port, self.log, self.started = port, log, time.monotonic()
        cmd = [sys.executable, "-m", "monitor", "--log-level", "DEBUG", "--config", str(config), "run"]
        cmd += ["--listen", f"127.0.0.1:{port}"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        self._read = 0

    def scored(self) -> list[tuple[bytes, bytes]]:
        with self.log.open("rb") as f:
            f.seek(self._read)
            data = f.read()
        cut = data.rfind(b"\n") + 1
        self._read += cut
        return SCORED.findall(data[:cut])

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, ""
        except OSError:
            return 0, ""

    def metric(self, name: str) -> float:
        """The sum of the samples whose line starts with `name`; retried while /metrics does not answer (a
        busy daemon), so a missing answer never reads as 0."""
        for _ in range(100):
            status, text = self.get("/metrics")
            if status == 200:
                return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))
            time.sleep(0.2)
        raise SystemExit(f"/metrics of the daemon logging to {self.log} does not answer")

    def since_start(self) -> float:
        return time.monotonic() - self.started

    def stop(self) -> float:
        """SIGTERM; seconds until it exited."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=600)
        return time.monotonic() - started


def wait(check: Callable[[], bool], what: str, daemons: list[Daemon], timeout: float = 1800.0) -> None:
    """Until `check()` holds (polled every 0.1 s)."""
    started = time.monotonic()
    while not check():
        if any(d.proc.poll() is not None for d in daemons):
            raise SystemExit(f"a daemon exited while waiting for {what}: see {daemons[0].log.parent}")
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def all_scored(daemons: list[Daemon], n: int, end: bytes | None) -> Callable[[], bool]:
    """A check: `n` distinct `scored` lines in these daemons' logs, of windows ending at `end` if given."""
    seen: set[tuple[bytes, bytes]] = set()

    def check() -> bool:
        for d in daemons:
            seen.update((s, e) for s, e in d.scored() if end is None or e == end)
        return len(seen) >= n

    return check


def append_round(server: str, topic: str, spec: StreamSpec, step: int, work: Path) -> bytes:
    """Produce point `step` of every series with kcat; returns its time as the `scored` lines write it."""
    values, _ = generate(spec)
    path = work / f"round-{step}.tsv"
    with path.open("wb") as f:
        for p in points(spec, values, first=step, last=step + 1):
            f.write(p.series.encode() + b"\t" + encode_point(p) + b"\n")
    subprocess.run([shutil.which("kcat") or "kcat", "-P", "-b", server, "-t", topic, "-K", "\t", "-l", str(path)],
                   check=True)  # fmt: skip
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(spec.start_ts + spec.step_s * step))
    return stamp.encode()


def changelog_size(server: str, topic: str) -> tuple[int, int]:
    """Records and bytes (key + value) in the changelog topic (all of it: the first daemon wrote it)."""
    consumer = KafkaConsumer(bootstrap_servers=server, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends, records, size = consumer.end_offsets(tps), 0, 0
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        for batch in consumer.poll(timeout_ms=500).values():
            records += len(batch)
            size += sum(len(r.key or b"") + len(r.value or b"") for r in batch)
    consumer.close()
    return records, size


def run(server: str, model: Path, n: int, extra: int, work: Path) -> dict[str, float]:
    spec = StreamSpec(series=n, points=WINDOW + extra + 2, healthy=WINDOW + extra + 2, anomalous_series=0)
    backlog = spec.points - 2
    topic, group = fresh("metrics"), fresh("group")
    path = work / "backlog.tsv"
    values, _ = generate(spec)
    with path.open("wb") as f:
        for p in points(spec, values, last=backlog):
            f.write(p.series.encode() + b"\t" + encode_point(p) + b"\n")
    produce_file(server, topic, path, PARTITIONS)
    config = work / f"config-{n}.json"
    config.write_text(json.dumps({
        "kafka": {"bootstrap_servers": server, "metrics_topic": topic, "group_id": group,
                  "alert_topic": fresh("alerts"), "dead_letter_topic": fresh("dlq"), "session_timeout_ms": 6000},
        "detectors": [{"window": WINDOW, "model": {"path": str(model)}}],
    }))  # fmt: skip
    r: dict[str, float] = {}
    a = Daemon(config, work / f"a-{n}.log")
    wait(all_scored([a], n * (extra + 1), None), "the backlog", [a])
    r["backlog_s"] = a.since_start()
    r["before_warming_up"] = a.metric("monitor_series_warming_up")
    r["stop_s"] = a.stop()
    records, size = changelog_size(server, f"{group}-state-changelog")
    r["changelog_records_per_point"] = records / (n * backlog)
    r["changelog_bytes_per_point"] = size / (n * backlog)
    r["changelog_bytes_per_s"] = size / r["backlog_s"]

    end = append_round(server, topic, spec, backlog, work)
    b = Daemon(config, work / f"b-{n}.log")
    wait(lambda: b.get("/readyz")[0] == 200, "B ready", [b])
    r["restart_ready_s"] = b.since_start()
    wait(all_scored([b], n, end), "B scores", [b])
    r["restart_scored_s"] = b.since_start()
    r["restart_warming_up"] = b.metric("monitor_series_warming_up")

    c = Daemon(config, work / f"c-{n}.log")
    wait(lambda: c.get("/readyz")[0] == 200, "C ready", [b, c])
    r["rebalance_ready_s"] = c.since_start()
    wait(lambda: c.metric("monitor_series_tracked") > 0, "C restored", [b, c])
    produced = time.monotonic()
    end = append_round(server, topic, spec, backlog + 1, work)
    wait(all_scored([b, c], n, end), "B and C score", [b, c])
    r["rebalance_scored_s"] = time.monotonic() - produced
    r["rebalance_replayed"] = c.metric('monitor_points_dropped_total{reason="replayed"}')
    r["rebalance_warming_up"] = b.metric("monitor_series_warming_up") + c.metric("monitor_series_warming_up")
    for d in (b, c):
        d.stop()
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", default="10000,100000", help="comma-separated series counts")
    parser.add_argument(
        "--extra",
        type=int,
        default=ModelSettings().online_warmup + ThresholdSettings().warmup,
        help="points per series beyond the first window (default: past the online normalisation's and the "
        "threshold's warm-ups, so a series warming up after the restart is one that started over)",
    )
    args = parser.parse_args()
    server = bootstrap()
    model = train_small(WINDOW, 32, latent=16)
    rows = [("series", "backlog s", "changelog rec/pt", "B/pt", "KiB/s", "restart ready s", "restart all scored s",
             "rebalance ready s", "rebalance all scored s", "replayed", "warming up: A / B / B+C")]  # fmt: skip
    for n in (int(s) for s in args.series.split(",")):
        work = Path(tempfile.mkdtemp(prefix=f"restore-{n}-"))
        r = run(server, model, n, args.extra, work)
        print(f"series={n} " + " ".join(f"{k}={v:.4g}" for k, v in r.items()) + f" logs={work}", flush=True)
        rows.append((f"{n:,}", f"{r['backlog_s']:.0f}", f"{r['changelog_records_per_point']:.4f}",
                     f"{r['changelog_bytes_per_point']:.0f}", f"{r['changelog_bytes_per_s'] / 1024:,.0f}",
                     f"{r['restart_ready_s']:.1f}", f"{r['restart_scored_s']:.1f}", f"{r['rebalance_ready_s']:.1f}",
                     f"{r['rebalance_scored_s']:.1f}", f"{r['rebalance_replayed']:,.0f}",
                     " / ".join(f"{r[k]:.0f}" for k in WARMING_UP)))  # fmt: skip
    print(table(rows))


if __name__ == "__main__":
    main()
