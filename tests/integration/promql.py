"""Reading the shipped dashboards and rules for the tests: their PromQL, the metric names it uses.

No PromQL parser ships with the Debian Prometheus, so this is a small tokenizer that knows just enough:
strings, label matchers `{...}` and ranges `[...]` are single tokens, so what is left at the top level
are metric names, function and aggregation names (followed by `(`, `by` or `without`), keywords,
numbers and operators.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD_DIR = ROOT / "deploy" / "grafana" / "dashboards"

_TOKEN = re.compile(
    r"""
      "(?:\\.|[^"\\])*" | '(?:\\.|[^'\\])*' | `[^`]*`          # strings
    | \{(?:"(?:\\.|[^"\\])*"|[^}"])*\}                          # label matchers
    | \[[^\]]*\]                                                # range or subquery
    | ==|!=|>=|<=|=~|!~                                         # two-character operators
    | [A-Za-z_:][A-Za-z0-9_:]*                                  # names and keywords
    | \d+(?:\.\d+)?(?:[eE][+-]?\d+)?                            # numbers
    | \S
    """,
    re.VERBOSE,
)
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_COMPARISONS = {"==", "!=", ">=", "<=", ">", "<"}
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = _GROUPING | {"bool", "and", "or", "unless", "offset", "inf", "nan", "atan2"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<match>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$")
SYNTHETIC = {"up"}
"""Series that Prometheus itself adds to every scrape; any other name must come from the daemon."""


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (recording rule names included)."""
    tokens = [m.group() for m in _TOKEN.finditer(expr)]
    names: set[str] = set()
    i = 0
    while i < len(tokens):
        token, after = tokens[i], tokens[i + 1] if i + 1 < len(tokens) else ""
        if token in _GROUPING and after == "(":
            i = tokens.index(")", i)  # a label list, not metrics
        elif token == "offset":
            i += 2  # the duration: a number and its unit
        elif _NAME.fullmatch(token) and token not in _KEYWORDS and after not in ("(", "by", "without"):
            names.add(token)
        i += 1
    return names


def with_bool(expr: str) -> str:
    """The expression with every comparison turned into a `bool` one: 0/1 instead of filtering.

    An alert's expression returns nothing while all is well; with `bool` it returns data exactly when
    the series it compares exist, which is what a test against a healthy system can check.
    """
    out, last = [], 0
    matches = list(_TOKEN.finditer(expr))
    for m, following in zip(matches, [*matches[1:], None], strict=True):
        if m.group() in _COMPARISONS and (following is None or following.group() != "bool"):
            out.append(expr[last : m.end()] + " bool" + ("" if expr[m.end() : m.end() + 1].isspace() else " "))
            last = m.end()
    return "".join(out) + expr[last:]


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Grafana's `$var`, `${var}`, `${var:format}` and `[[var]]`; an unknown variable is an error."""

    def value(m: re.Match[str]) -> str:
        name = next(g for g in m.groups() if g)
        if name not in values:
            raise KeyError(f"unknown variable ${name} in {text!r}")
        return values[name]

    return _VARIABLE.sub(value, text)


@dataclass(frozen=True)
class Query:
    where: str
    """Dashboard and panel, or rules file and rule: what a failure message names."""
    expr: str
    instant: bool = False


@dataclass(frozen=True)
class Variable:
    name: str
    match: str | None
    """The series selector of `label_values(match, label)`, None for `label_values(label)`."""
    label: str


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def dashboard_queries(name: str, dashboard: dict) -> Iterator[Query]:
    """Every panel target (rows' nested panels too) and every Prometheus annotation."""
    panels = list(dashboard.get("panels", []))
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            yield Query(f"{name}: {panel['title']} {target['refId']}", target["expr"], bool(target.get("instant")))
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            yield Query(f"{name}: annotation {annotation['name']}", annotation["expr"])


def dashboard_variables(dashboard: dict) -> list[Variable]:
    """The query variables, in order (later ones may use earlier ones)."""
    found = []
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query":
            query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = _LABEL_VALUES.match(query)
            assert m, f"variable {v['name']}: only label_values(...) queries are supported, got {query!r}"
            found.append(Variable(v["name"], m["match"], m["label"]))
    return found


def rule_groups() -> dict[str, list[dict]]:
    """Rules file name -> its rules, for every shipped rules file."""
    files = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
    return {p.name: [r for g in yaml.safe_load(p.read_text())["groups"] for r in g["rules"]] for p in files}


def rule_queries() -> Iterator[Query]:
    """Recording rules as they are; alerting rules with `bool` comparisons (see `with_bool`)."""
    for file, rules in rule_groups().items():
        for rule in rules:
            if "record" in rule:
                yield Query(f"{file}: {rule['record']}", rule["expr"], instant=True)
            else:
                yield Query(f"{file}: {rule['alert']} (with bool)", with_bool(rule["expr"]), instant=True)
