"""config.yaml → one frozen, typed `Config`; every mistake is one line naming the key path and the value.

Unknown keys are errors too: a misspelt option that is silently ignored is worse than a failed start.
Environment variables override the broker address and the secrets, so they need not live in the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from monitor.config.host import auto_scoring_threads, usable_cpus
from monitor.config.http import HttpSettings, parse_http
from monitor.config.kafka import CheckpointSettings, KafkaSettings, parse_checkpoint, parse_kafka
from monitor.config.model import (
    ModelSettings,
    RetrainingSettings,
    TrainingSettings,
    parse_labels,
    parse_model,
    parse_retraining,
    parse_training,
)
from monitor.config.reader import Invalid, Section, show
from monitor.engine.alerting import AlertSettings
from monitor.engine.detector import DetectorSettings
from monitor.engine.threshold import ThresholdSettings
from monitor.engine.windows import DUPLICATE_POLICIES, PointRules
from monitor.errors import ConfigError
from monitor.formats import FIELDS_AS, FORMATS, TIME_UNITS, FormatOptions, Limits

INPUT_FORMATS = FORMATS
SCORING_BACKENDS = ("torch", "onnx")
"""`monitor.models.onnx_backend.BACKENDS`, repeated here because the config may not import torch."""


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    settings: DetectorSettings
    model: ModelSettings
    training: TrainingSettings
    retraining: RetrainingSettings = field(default_factory=RetrainingSettings)


@dataclass(frozen=True, slots=True)
class Config:
    kafka: KafkaSettings
    detectors: tuple[DetectorConfig, ...]
    input_format: str = "json"
    max_message_bytes: int = 1_048_576
    input_options: FormatOptions = field(default_factory=FormatOptions)
    listen_host: str = "127.0.0.1"
    listen_port: int = 9308
    exporter_max_series: int = 2000
    http: HttpSettings = field(default_factory=HttpSettings)
    scoring_threads: int = 1
    """Threads of the daemon's scorer, side by side over a batch's chunks (`scoring.threads`, `auto`
    resolved for this host)."""
    training_threads: int = 1
    """Threads of training and replays (retraining, `monitor evaluate`): `scoring.threads` when it is a
    number, 1 with `auto`, so results do not depend on the host (torch's sums differ with the threads)."""
    scoring_max_batch: int = 256
    scoring_backend: str = "torch"
    scoring_device: str = "cpu"
    checkpoint: CheckpointSettings = field(default_factory=CheckpointSettings)
    scoring_overlap: bool = True
    source: str = "config.yaml"

    def detector(self, name: str | None = None) -> DetectorConfig:
        """The detector called `name`; None: the first (what a command's `--detector` defaults to)."""
        if name is None:
            return self.detectors[0]
        for d in self.detectors:
            if d.settings.name == name:
                return d
        names = [d.settings.name for d in self.detectors]
        raise ConfigError(f"{self.source}: no detector named {name!r} (have {names})")


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    return parse_config(doc, source=str(path), base_dir=path.parent, environ=environ)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message spans several lines with a snippet; the config error is one line."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return f"{getattr(exc, 'problem', None) or 'syntax error'} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split())


def parse_config(
    doc: Any,
    source: str = "config.yaml",
    base_dir: Path = Path("."),
    environ: Mapping[str, str] | None = None,
) -> Config:
    try:
        return _parse(Section(doc, "", source), base_dir, os.environ if environ is None else environ)
    except Invalid as bad:
        raise ConfigError(f"{source}: {bad}") from None


def _parse(top: Section, base_dir: Path, environ: Mapping[str, str]) -> Config:
    kafka = parse_kafka(top.section("kafka"), base_dir, environ)
    inp, exporter, scoring = top.section("input"), top.section("exporter"), top.section("scoring")
    host, port = _listen(exporter)
    backend = scoring.text("backend", "torch", SCORING_BACKENDS)
    threads = _threads(scoring)
    config = Config(
        kafka=kafka,
        detectors=_detectors(top, base_dir),
        input_format=inp.text("format", "json", INPUT_FORMATS),
        max_message_bytes=inp.integer("max_message_bytes", 1_048_576, 64),
        input_options=_input_options(inp),
        listen_host=host,
        listen_port=port,
        exporter_max_series=exporter.integer("max_series", 2000, 1),
        http=parse_http(exporter, base_dir, environ),
        scoring_threads=threads or auto_scoring_threads(usable_cpus()),
        training_threads=threads or 1,
        scoring_max_batch=scoring.integer("max_batch", 256, 1),
        scoring_backend=backend,
        scoring_device=_device(scoring, backend),
        checkpoint=parse_checkpoint(top.section("checkpoint")),
        scoring_overlap=scoring.flag("overlap", True),
        source=top.source,
    )
    for section in (inp, exporter, scoring, top):
        section.done()
    return config


def _device(scoring: Section, backend: str) -> str:
    """`cpu`, `cuda` or `cuda:N`. Whether CUDA is there is asked when the model loads (torch is not imported
    here); ONNX Runtime scores on the CPU only, so `cuda` needs the torch backend."""
    device = scoring.text("device", "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise Invalid(f"{scoring.path_of('device')}: must be cpu, cuda or cuda:N, got {show(device)}")
    if device != "cpu" and backend != "torch":
        raise Invalid(
            f"{scoring.path_of('device')}: {device} needs scoring.backend torch (ONNX Runtime scores on the CPU)"
        )
    return device


def _input_options(s: Section) -> FormatOptions:
    d, units = FormatOptions(), tuple(TIME_UNITS)
    return FormatOptions(
        influx_precision=s.text("influx_precision", d.influx_precision, units),
        telegraf_timestamp_units=s.text("telegraf_timestamp_units", d.telegraf_timestamp_units, units),
        fields_as=s.text("fields_as", d.fields_as, FIELDS_AS),
        limits=Limits(*(s.integer(f.name, getattr(d.limits, f.name), 1) for f in fields(Limits))),
    )


def _threads(scoring: Section) -> int | None:
    """`scoring.threads`: a number of threads, or None for `auto` (the default)."""
    value = scoring.get("threads", "auto")
    if value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        raise Invalid(f"{scoring.path_of('threads')}: must be auto or an integer from 1 to 64, got {show(value)}")
    return value


def _listen(s: Section) -> tuple[str, int]:
    value = s.text("listen", "127.0.0.1:9308")
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise Invalid(f"{s.path_of('listen')}: must be HOST:PORT, got {show(value)}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _detectors(top: Section, base_dir: Path) -> tuple[DetectorConfig, ...]:
    items = top.get("detectors", [{}])
    if not isinstance(items, list) or not items:
        raise Invalid(f"detectors: must be a non-empty list, got {show(items)}")
    detectors = tuple(_detector(Section(item, f"detectors[{i}]", top.source), base_dir) for i, item in enumerate(items))
    names = [d.settings.name for d in detectors]
    if len(set(names)) != len(names):
        raise Invalid(f"detectors: names must be unique, got {names}")
    return detectors


def _detector(s: Section, base_dir: Path) -> DetectorConfig:
    window = s.integer("window", 32, 8, 4096)
    settings = DetectorSettings(
        name=s.text("name", "default"),
        series=s.text("series", "*"),
        features=s.names("features", ("value",)),
        window=window,
        stride=s.integer("stride", DetectorSettings().stride, 1, window),
        max_series=s.integer("max_series", 100_000, 1),
        threshold=_threshold(s.section("threshold")),
        alerting=_alerting(s.section("alerting")),
        points=_points(s.section("points")),
        labels=parse_labels(s, "labels"),
        entity_label=s.text("entity_label", None),
    )
    model = parse_model(s.section("model"), base_dir, window)
    config = DetectorConfig(
        settings, model, parse_training(s.section("training")), parse_retraining(s.section("retraining"))
    )
    s.done()
    return config


def _threshold(s: Section) -> ThresholdSettings:
    d = ThresholdSettings()
    t = ThresholdSettings(
        warmup=s.integer("warmup", d.warmup, 0),
        history=s.integer("history", d.history, 8),
        k=s.number("k", d.k, 0.0),
        minimum=s.number("minimum", d.minimum, 0.0),
        smoothing=s.integer("smoothing", d.smoothing, 1, 10_000),
        adapt_after=s.integer("adapt_after", d.adapt_after, 0),
        settle=s.number("settle", d.settle, 0.0, 1.0),
        hold=s.number("hold", d.hold, 0.0, 1.0),
        learn_within=s.number("learn_within", d.learn_within, 0.0),
    )
    s.done()
    return t


def _alerting(s: Section) -> AlertSettings:
    d = AlertSettings()
    a = AlertSettings(
        for_windows=s.integer("for", d.for_windows, 1),
        resolve_after=s.integer("resolve_after", d.resolve_after, 1),
        critical_ratio=s.number("critical_ratio", d.critical_ratio, 1.0),
        precision_verdicts=s.integer("precision_verdicts", d.precision_verdicts, 1),
        cooldown=s.integer("cooldown", d.cooldown, 0),
        confirm_after=s.integer("confirm_after", d.confirm_after, 1),
        confirm_ratio=s.number("confirm_ratio", d.confirm_ratio, 1.0),
    )
    s.done()
    return a


def _points(s: Section) -> PointRules:
    d = PointRules()
    p = PointRules(
        step=s.number("step", d.step, 0.0),
        fill_gaps=s.integer("fill_gaps", d.fill_gaps, 0, 1000),
        reset_after_gap=s.flag("reset_after_gap", d.reset_after_gap),
        allowed_lateness=s.number("allowed_lateness", d.allowed_lateness, 0.0),
        duplicates=s.text("duplicates", d.duplicates, DUPLICATE_POLICIES),
    )
    if p.fill_gaps and not p.step:
        raise Invalid(f"{s.path_of('fill_gaps')}: needs {s.path_of('step')}, the expected seconds between points")
    s.done()
    return p
