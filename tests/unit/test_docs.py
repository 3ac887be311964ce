"""The docs match the code: every config key with its default, environment variables, formats and
rejection reasons, the alert schema, the metric names, CLI commands, and links between the docs."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
import yaml

from monitor.cli import build_parser
from monitor.config import parse_config
from monitor.config import reader as config_reader
from monitor.formats import FORMATS, REASONS
from monitor.observability.exporter import Exporter
from monitor.records import Alert, alert_id, alert_to_dict, parse_time

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
REFERENCE = (DOCS / "configuration.md").read_text()
FORMATS_DOC = (DOCS / "formats.md").read_text()
ROW = re.compile(r"^\| `([a-z_\[\].]+)` \| (.+?) \|", re.M)


def parser_keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Every key path the config parser reads (list items as `[]`), with its default."""
    seen: dict[str, object] = {}
    get = config_reader.Section.get

    def recording_get(self: config_reader.Section, key: str, default: object) -> object:
        seen.setdefault(re.sub(r"\[\d+\]", "[]", self.path_of(key)), default)
        return get(self, key, default)

    monkeypatch.setattr(config_reader.Section, "get", recording_get)
    parse_config({}, environ={})
    sections = {k for k in seen for other in seen if other.startswith((f"{k}.", f"{k}[]"))}
    return {k: v for k, v in seen.items() if k not in sections}


def documented_keys() -> dict[str, object]:
    """Key → default as the reference's tables show it (`—`: unset)."""
    rows = {}
    for key, cell in ROW.findall(REFERENCE):
        text = cell.strip().strip("`")
        try:
            rows[key] = None if text == "—" else yaml.safe_load(text)
        except yaml.YAMLError:
            rows[key] = text
    return rows


def test_every_config_key_is_in_the_reference_with_its_default(monkeypatch):
    code, docs = parser_keys(monkeypatch), documented_keys()
    assert sorted(set(code) - set(docs)) == [], "config keys missing from docs/configuration.md"
    assert sorted(set(docs) - set(code)) == [], "docs/configuration.md lists keys the parser does not read"
    wrong = {k: (docs[k], v) for k, v in code.items() if docs[k] != (list(v) if isinstance(v, tuple) else v)}
    assert wrong == {}, "defaults in docs/configuration.md (doc, code)"


def test_every_environment_variable_is_in_the_reference():
    source = "\n".join(p.read_text() for p in (ROOT / "monitor").rglob("*.py"))
    variables = set(re.findall(r'"(MONITOR_[A-Z_]+)"', source))
    assert variables, "no MONITOR_* variable found in the code"
    assert sorted(v for v in variables if f"`{v}`" not in REFERENCE) == []


def test_formats_and_rejection_reasons_are_documented():
    for fmt in FORMATS:
        assert f"`{fmt}`" in FORMATS_DOC and f"`{fmt}`" in REFERENCE, fmt
    table = dict(re.findall(r"^\| `([a-z_0-9]+)` \| (.+) \|$", FORMATS_DOC, re.M))
    assert sorted(r for r in REASONS if r not in table) == [], "reasons missing from docs/formats.md"
    assert sorted(r for r in REASONS if f"`{r}`" not in README) == [], "reasons missing from README.md"


def test_readme_alert_example_has_exactly_the_alert_fields():
    example = re.search(r"### Alerts.*?```json\n(.*?)```", README, re.S)
    assert example, "README.md has no alert example"
    alert = Alert("id", "firing", "d", "s", {}, "v", 0.0, 0.0, None, 1.0, 0.5, "warning", 0.0, 0.0, ())
    documented = orjson.loads(example.group(1))
    assert documented.keys() == alert_to_dict(alert).keys()
    assert documented["schema"] == alert_to_dict(alert)["schema"]
    started = parse_time(documented["started_at"])
    assert documented["alert_id"] == alert_id(documented["detector"], documented["series"], started)


def test_readme_lists_every_metric():
    names = set()
    for family in Exporter().registry.collect():
        names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    assert sorted(n for n in names if f"`{n}" not in README) == [], "metrics missing from README.md"


def test_readme_mentions_every_command_and_the_guides():
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert sorted(c for c in commands if f"monitor {c}" not in README) == []
    for guide in ("configuration.md", "formats.md", "deployment.md", "operations.md"):
        assert f"docs/{guide}" in README, guide


@pytest.mark.parametrize("page", [ROOT / "README.md", *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_resolve(page):
    for target in re.findall(r"\]\((?!https?://|#)([^)#\s]+)", page.read_text()):
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
