"""Regressions of a new report against a stored (base) report: `optcli compare BASE NEW` and
`optcli run --against BASE`.

Engines are matched by label, speed metrics by (engine, batch size), validation metrics by
engine. Each metric with a rule (optcli/regression.py: relative thresholds and the noise rule:
a speed change counts only beyond the 95% intervals of both runs) is a `regression.<metric>`
gate per engine; the baseline engine is listed but not gated. A metric in only one report is
listed as added/removed and never fails by itself; an engine of the base report that is missing
from the new one fails (`regression.engine`: it stopped building or running).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optcli.errors import UserInputError
from optcli.gates import GateResult, Threshold
from optcli.regression import DEFAULT_RULES, LATENCY_METRICS, Rule, parse_rules

_SPEED = {  # metric -> (value path, interval path) in a benchmark result
    "p50_ms": (("latency_ms", "p50"), ("latency_ms", "p50_ci")),
    "p99_ms": (("latency_ms", "p99"), None),
    "throughput": (("throughput",), ("throughput_ci",)),
    "speedup": (("speedup",), ("speedup_ci",)),
}
_NOT_METRICS = {"values"}  # validation counts that are not quality metrics


@dataclass
class Measured:
    value: float | None
    interval: list[float] | None = None


@dataclass
class Side:
    """One report's numbers: engine labels and (engine, batch size or None, metric) -> Measured."""

    path: str
    name: str
    engines: list[str]
    baseline: str | None
    metrics: dict[tuple[str, int | None, str], Measured] = field(default_factory=dict)


def load_report(path: Path, *, role: str) -> dict[str, Any]:
    """A finished report.json, or exit 2 naming the file."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserInputError(f"{path}: {role} report does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{path}: {role} report is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("recipe"), dict) or "status" not in data:
        raise UserInputError(f"{path}: {role} report is not an optcli report.json (no recipe/status)")
    if data["status"] != "finished":
        raise UserInputError(
            f"{path}: {role} report is from a run that did not finish (status {data['status']}): "
            "it has no results to compare"
        )
    return data


def check_same_recipe(base: dict, new: dict, base_path: str, new_path: str, allow_different: bool) -> None:
    base_name, new_name = base["recipe"].get("name"), new["recipe"].get("name")
    if base_name != new_name and not allow_different:
        raise UserInputError(
            f"{new_path}: recipe '{new_name}' is not the base report's recipe '{base_name}' ({base_path})",
            hint="compare reports of one recipe, or pass --allow-different",
        )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if value in ("NaN", "Infinity", "-Infinity"):  # report.json writes non-finite numbers as strings
        return float(value)
    return None


def _dig(data: dict, path: tuple[str, ...] | None) -> Any:
    for key in path or ():
        data = data.get(key) if isinstance(data, dict) else None
    return data if path else None


def _interval(value: Any) -> list[float] | None:
    if isinstance(value, list | tuple) and len(value) == 2:
        bounds = [_number(v) for v in value]
        if all(b is not None and math.isfinite(b) for b in bounds):
            return bounds
    return None


def read_side(report: dict[str, Any], path: str) -> Side:
    engines = [e["label"] for e in report.get("engines") or [] if isinstance(e, dict) and "label" in e]
    baseline = next((e["label"] for e in report.get("engines") or [] if e.get("baseline")), None)
    side = Side(path, report["recipe"].get("name"), engines, baseline)
    for result in (report.get("benchmark") or {}).get("results") or []:
        engine, batch = result["engine"], int(result["batch_size"])
        for metric, (value_path, ci_path) in _SPEED.items():
            value = _number(_dig(result, value_path))
            if value is not None:
                side.metrics[engine, batch, metric] = Measured(value, _interval(_dig(result, ci_path)))
    for entry in (report.get("validation") or {}).get("engines") or []:
        for metric, raw in (entry.get("metrics") or {}).items():
            value = _number(raw)
            if value is not None and metric not in _NOT_METRICS:
                side.metrics[entry["engine"], None, metric] = Measured(value)
    for engine in {key[0] for key in side.metrics} - set(side.engines):
        side.engines.append(engine)
    return side


def resolve_rules(new_report: dict[str, Any], flags: dict[str, str]) -> tuple[dict[str, Rule], str]:
    """The NEW report's recipe `regression:` section with --regression flags over it; the defaults
    when neither gives a rule. Returns the rules and where they came from."""
    recipe_rules = ((new_report.get("recipe") or {}).get("resolved") or {}).get("regression") or {}
    recipe_rules = {k: v for k, v in recipe_rules.items() if v is not None}
    merged = {**recipe_rules, **flags}
    if not merged:
        return parse_rules(DEFAULT_RULES, source="default rules"), "default"
    source = "flags" if not recipe_rules else "recipe" if not flags else "recipe+flags"
    return parse_rules(merged, source="--regression" if flags else "regression"), source


def compare(base: Side, new: Side, rules: dict[str, Rule]) -> tuple[dict[str, Any], list[GateResult]]:
    """The regression table (report.json's `regression`) and the gates it decides."""
    rows, gates = [], []
    missing = [e for e in base.engines if e not in new.engines]
    for key in sorted(set(base.metrics) | set(new.metrics), key=_order):
        if key[0] in missing:
            continue  # the whole engine is missing: one gate below, not one per metric
        row, gate = _row(key, base.metrics.get(key), new.metrics.get(key), rules.get(key[2]), base)
        rows.append(row)
        if gate is not None:
            gates.append(gate)
    for engine in missing:
        gates.append(
            GateResult(  # value: 1 when the engine is in the run (it is not)
                "regression.engine",
                engine,
                0.0,
                Threshold(">=", 1.0),
                False,
                f"in the base report ({base.path}) but not in this run: it was not built or not run",
            )
        )
    failed = [g for g in gates if not g.passed]
    table = {
        "base": {"path": base.path, "recipe": base.name},
        "new": {"path": new.path, "recipe": new.name},
        "rules": {metric: str(rule) for metric, rule in rules.items()},
        "rows": rows,
        "missing_engines": missing,
        "added_engines": [e for e in new.engines if e not in base.engines],
        "verdict": "fail" if failed else "pass",
    }
    return table, gates


def _noise_note(before: Measured, after: Measured) -> str:
    if before.interval and after.interval:
        return "95% CIs of both"
    lacking = "" if not (before.interval or after.interval) else " in base" if after.interval else " in new"
    return f"point values (no CI{lacking})"


def _order(key: tuple[str, int | None, str]) -> tuple:
    engine, batch, metric = key
    return (engine, batch is None, batch or 0, metric)


def _row(key, before: Measured | None, after: Measured | None, rule: Rule | None, base: Side):
    engine, batch, metric = key
    row: dict[str, Any] = {
        "engine": engine,
        "batch_size": batch,
        "metric": metric,
        "base": before.value if before else None,
        "new": after.value if after else None,
        "base_interval": before.interval if before else None,
        "new_interval": after.interval if after else None,
        "change": None,
        "change_text": "-",
        "change_interval": None,
        "rule": str(rule) if rule else None,
        "status": "info",
        "note": "",
    }
    if before is None or after is None:
        row["status"] = "added" if before is None else "removed"
        return row, None
    judge = rule or Rule("<=", math.inf, metric in LATENCY_METRICS)  # no rule: only the change is shown
    if not math.isfinite(before.value):
        row["note"] = "base value not finite: not compared"
        return row, None
    status, change, interval = judge.judge(before.value, after.value, before.interval, after.interval)
    row.update(change=change, change_text=judge.format_change(change), change_interval=interval)
    if metric in _SPEED:
        row["note"] = _noise_note(before, after)
    if rule is None:
        return row, None
    if engine == base.baseline:
        row["note"] = "baseline, not gated"
        return row, None
    row["status"] = {"ok": "pass", "regression": "fail"}.get(status, status)
    where = f"batch size {batch}: " if batch is not None else ""
    noise = {"within_noise": "; within the noise of both runs", "regression": ""}.get(status, "")
    if status == "regression" and interval:
        noise = "; beyond the noise of both runs"
    detail = f"{where}{before.value:.6g} -> {after.value:.6g} ({row['change_text']}){noise}"
    gate = GateResult(
        f"regression.{metric}",
        engine,
        change,
        rule,
        status != "regression",
        detail,
        interval=tuple(interval) if interval else None,
    )
    return row, gate


@dataclass
class Against:
    """The base report of `optcli run --against`, loaded before the run (a bad file is exit 2 at once)."""

    path: str
    report: dict[str, Any]

    @classmethod
    def load(cls, path: Path, recipe_name: str) -> Against:
        report = load_report(path, role="--against")
        if report["recipe"].get("name") != recipe_name:
            raise UserInputError(
                f"{path}: --against report is of recipe '{report['recipe'].get('name')}', "
                f"not '{recipe_name}'",
                hint="optcli compare BASE NEW --allow-different compares reports of different recipes",
            )
        return cls(str(path), report)

    def apply(self, recipe, report, new_path: Path) -> dict[str, Any]:
        """Add the regression gates to a run's `report` (a RunReport); return its `regression` table.
        The rules: the recipe's `regression:` section, else the defaults."""
        rules = recipe.regression.rules() if recipe.regression is not None else {}
        try:
            parsed = parse_rules(rules or DEFAULT_RULES, source="regression")
        except ValueError as exc:  # the recipe model checked them already; a rule still wrong is bad input
            raise UserInputError(str(exc)) from None
        new = read_side(report.to_dict(), str(new_path))
        table, gates = compare(read_side(self.report, self.path), new, parsed)
        # Like validate gates under --target: a candidate that was not chosen is not deployed, so its
        # regressions are informational; the chosen one's (and every fixed build engine's) count.
        unchosen = set(report.selection.get("candidates", [])) - {report.selection.get("chosen")}
        if report.selection.get("chosen"):
            for gate in gates:
                gate.counts = gate.engine not in unchosen
        report.gates += gates
        return {**table, "rules_from": "recipe" if rules else "default"}
