"""`optcli compare` and `optcli run --against`: on reports of a real tiny run and edited copies of them."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MODEL_FILE, tiny_recipe_text

from optcli.errors import RecipeError
from optcli.recipe import parse_recipe
from optcli.regression import REGRESSION_METRICS, RegressionSection, Rule
from optcli.report.schema import report_schema

ENGINE = "onnxruntime-fp32"
RECIPE = tiny_recipe_text(
    export="export: {exporter: torchscript}",  # the faster exporter: the tests are about reports
    benchmark="benchmark: {batch_sizes: [1, 4], warmup: 1, iterations: 6}",
)


def optcli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OPTCLI_DEBUG"}
    env["OPTCLI_CACHE_DIR"] = str(folder / "cache")  # the module's runs share one stage cache
    command = [sys.executable, "-m", "optcli", *args]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, dict]:
    """One real run of the tiny recipe: (its folder, its report.json)."""
    folder = tmp_path_factory.mktemp("compare")
    (folder / "models.py").write_text(MODEL_FILE)
    (folder / "recipe.yaml").write_text(RECIPE)
    proc = optcli(folder, "run", "recipe.yaml", "--out", "base", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return folder, json.loads((folder / "base" / "report.json").read_text())


def write(folder: Path, name: str, report: dict) -> str:
    (folder / name).write_text(json.dumps(report))
    return name


def result(report: dict, engine: str = ENGINE, batch_size: int = 1) -> dict:
    return next(
        r for r in report["benchmark"]["results"] if r["engine"] == engine and r["batch_size"] == batch_size
    )


def metrics(report: dict, engine: str = ENGINE) -> dict:
    return next(e for e in report["validation"]["engines"] if e["engine"] == engine)["metrics"]


def pinned(report: dict, p50: float, half_width: float) -> dict:
    """A copy whose ENGINE p50 at batch 1 is `p50` with the interval p50 * (1 +- half_width)."""
    edited = copy.deepcopy(report)
    latency = result(edited)["latency_ms"]
    latency["p50"], latency["p50_ci"] = p50, [p50 * (1 - half_width), p50 * (1 + half_width)]
    return edited


def rows(proc: subprocess.CompletedProcess, **match) -> list[dict]:
    """The rows of `compare --json` whose fields equal `match`."""
    return [r for r in json.loads(proc.stdout)["rows"] if all(r[k] == v for k, v in match.items())]


def message(proc: subprocess.CompletedProcess) -> str:
    return " ".join(proc.stderr.split())  # undo the console's line wrapping


def test_an_identical_rerun_passes(base):
    folder, report = base
    proc = optcli(folder, "compare", "base/report.json", "base/report.json", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["verdict"] == "pass" and summary["rules_from"] == "default"
    assert summary["rules"] == {"p50_ms": "<= +5%", "cosine": ">= -0.0005", "accuracy": ">= -0.002"}
    gated = {(g["name"], g["engine"]) for g in summary["gates"]}
    assert {("regression.p50_ms", ENGINE), ("regression.cosine", ENGINE)} <= gated
    assert all(g["status"] == "pass" for g in summary["gates"])
    # Both batch sizes of the benchmark are matched; the baseline is listed, never gated.
    p50_rows = [r for r in summary["rows"] if r["metric"] == "p50_ms"]
    assert {(r["engine"], r["batch_size"]) for r in p50_rows} == {
        (e, b) for e in (ENGINE, report["benchmark"]["baseline"]) for b in (1, 4)
    }
    assert all(g["engine"] != report["benchmark"]["baseline"] for g in summary["gates"])
    assert "PASS" in proc.stderr


def test_a_20_percent_p50_regression_beyond_the_noise_fails(base):
    folder, report = base
    p50 = result(report)["latency_ms"]["p50"]
    old = write(folder, "tight-base.json", pinned(report, p50, 0.01))
    new = write(folder, "tight-new.json", pinned(report, p50 * 1.2, 0.01))
    proc = optcli(folder, "compare", old, new, "--json")
    assert proc.returncode == 1, proc.stderr
    assert f"regression.p50_ms ({ENGINE})" in message(proc)
    (gate,) = [g for g in json.loads(proc.stdout)["gates"] if not g["passed"]]
    assert gate["name"] == "regression.p50_ms"
    assert gate["engine"] == ENGINE and gate["status"] == "fail"
    assert gate["value"] == pytest.approx(0.2)
    assert gate["threshold"] == {"op": "<=", "value": 0.05} and gate["threshold_text"] == "<= +5%"
    assert gate["interval"][0] > 0.05  # new low bound vs base high bound: still beyond +5%
    assert "beyond the noise" in gate["detail"]


def test_the_same_20_percent_within_wide_intervals_is_noise_not_a_regression(base):
    folder, report = base
    p50 = result(report)["latency_ms"]["p50"]
    old = write(folder, "wide-base.json", pinned(report, p50, 0.3))
    new = write(folder, "wide-new.json", pinned(report, p50 * 1.2, 0.3))
    proc = optcli(folder, "compare", old, new, "--json")
    assert proc.returncode == 0, proc.stderr
    (row,) = rows(proc, metric="p50_ms", engine=ENGINE, batch_size=1)
    assert row["status"] == "within_noise" and row["change"] == pytest.approx(0.2)
    assert "within noise" in message(proc)


def test_reports_without_intervals_fall_back_to_point_values_and_say_so(base):
    folder, report = base
    old, new = copy.deepcopy(report), copy.deepcopy(report)
    for edited in (old, new):
        for entry in edited["benchmark"]["results"]:
            entry["latency_ms"].pop("p50_ci", None)
    result(new)["latency_ms"]["p50"] = result(old)["latency_ms"]["p50"] * 1.2
    names = write(folder, "old-a.json", old), write(folder, "old-b.json", new)
    proc = optcli(folder, "compare", *names, "--json")
    assert proc.returncode == 1, proc.stderr
    (row,) = rows(proc, metric="p50_ms", status="fail")
    assert row["engine"] == ENGINE and row["note"] == "point values (no CI)"
    assert "point values (no CI)" in message(proc)


def test_a_cosine_drop_of_0_01_fails_unless_a_flag_allows_it(base):
    folder, report = base
    new = copy.deepcopy(report)
    metrics(new)["cosine"] = metrics(report)["cosine"] - 0.01
    name = write(folder, "cosine-drop.json", new)
    proc = optcli(folder, "compare", "base/report.json", name)
    assert proc.returncode == 1, proc.stderr
    assert f"regression.cosine ({ENGINE})" in message(proc)
    allowed = optcli(folder, "compare", "base/report.json", name, "--regression", "cosine=>= -0.02")
    assert allowed.returncode == 0, allowed.stderr
    assert "cosine >= -0.02" in message(allowed)


def test_a_missing_engine_fails_and_a_new_metric_is_only_listed(base):
    folder, report = base
    added = copy.deepcopy(report)
    metrics(added)["accuracy"] = 0.5  # only in the new report: listed, never a failure by itself
    proc = optcli(folder, "compare", "base/report.json", write(folder, "added.json", added), "--json")
    assert proc.returncode == 0, proc.stderr
    (row,) = rows(proc, metric="accuracy")
    assert row["status"] == "added" and row["new"] == 0.5

    gone = copy.deepcopy(report)
    gone["engines"] = [e for e in gone["engines"] if e["label"] != ENGINE]
    gone["benchmark"]["results"] = [r for r in gone["benchmark"]["results"] if r["engine"] != ENGINE]
    gone["validation"]["engines"] = []
    proc = optcli(folder, "compare", "base/report.json", write(folder, "gone.json", gone), "--json")
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["missing_engines"] == [ENGINE]
    assert [g["name"] for g in summary["gates"] if not g["passed"]] == ["regression.engine"]
    assert f"regression.engine ({ENGINE})" in message(proc)


def test_different_recipes_and_unreadable_reports_exit_2_naming_the_file(base):
    folder, report = base
    other = copy.deepcopy(report)
    other["recipe"]["name"] = "other"
    name = write(folder, "other.json", other)
    proc = optcli(folder, "compare", "base/report.json", name)
    assert proc.returncode == 2, proc.stderr
    assert "other.json" in message(proc) and "'other'" in message(proc) and "'tiny'" in message(proc)
    assert "Traceback" not in proc.stderr
    assert optcli(folder, "compare", "base/report.json", name, "--allow-different").returncode == 0

    (folder / "broken.json").write_text("{not json")
    proc = optcli(folder, "compare", "broken.json", "base/report.json")
    assert proc.returncode == 2 and "broken.json" in message(proc), proc.stderr
    unfinished = {**report, "status": "error"}
    proc = optcli(folder, "compare", "base/report.json", write(folder, "unfinished.json", unfinished))
    assert proc.returncode == 2 and "unfinished.json" in message(proc) and "status error" in message(proc)
    proc = optcli(folder, "compare", "base/report.json", "base/report.json", "--regression", "latency=<= 5%")
    assert proc.returncode == 2 and "--regression" in message(proc) and "'latency'" in message(proc)


def test_run_against_a_doctored_base_fails_with_the_regression_gate_in_report_json(base):
    folder, report = base
    doctored = copy.deepcopy(report)  # as if the base run had been 1000x faster
    for entry in doctored["benchmark"]["results"]:
        latency = entry["latency_ms"]
        latency["p50"] /= 1000
        latency["p50_ci"] = [latency["p50"], latency["p50"]]
    write(folder, "doctored.json", doctored)
    (folder / "recipe.yaml").write_text(RECIPE + 'regression: {p50_ms: "<= +10%"}\n')
    proc = optcli(folder, "run", "recipe.yaml", "--out", "new", "--against", "doctored.json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    new = json.loads((folder / "new" / "report.json").read_text())
    assert new["verdict"] == "fail"
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (the dev extra) checks report.json")
    jsonschema.validate(new, report_schema())  # regression gates are gate records like any other
    failed = [g for g in new["gates"] if not g["passed"]]
    assert {(g["name"], g["engine"]) for g in failed} == {("regression.p50_ms", ENGINE)}
    assert all(g["status"] == "fail" and g["counts"] and g["threshold_text"] == "<= +10%" for g in failed)
    assert len(failed) == 2  # batch sizes 1 and 4
    assert new["regression"]["rules"] == {"p50_ms": "<= +10%"} and new["regression"]["rules_from"] == "recipe"
    assert new["regression"]["base"]["path"] == "doctored.json"
    assert "Regressions vs doctored.json" in message(proc) and "REGRESSION" in proc.stderr

    (folder / "recipe.yaml").write_text(RECIPE.replace("name: tiny", "name: other"))
    proc = optcli(folder, "run", "recipe.yaml", "--out", "other", "--against", "doctored.json")
    assert proc.returncode == 2, proc.stderr  # refused before anything runs
    assert "doctored.json" in message(proc) and not (folder / "other").exists()


def test_rules_parse_signed_relative_and_absolute_changes():
    rule = Rule.parse("<= +5%")
    assert (rule.op, rule.value, rule.relative, str(rule)) == ("<=", 0.05, True, "<= +5%")
    assert rule.judge(10.0, 10.4, None, None)[0] == "ok"
    assert rule.judge(10.0, 10.6, None, None)[0] == "regression"
    # Intervals: fail only when the new low bound is beyond the base high bound * 1.05.
    assert rule.judge(10.0, 12.0, [9.0, 11.0], [11.0, 13.0])[0] == "within_noise"
    assert rule.judge(10.0, 12.0, [9.9, 10.1], [11.9, 12.1])[0] == "regression"
    drop = Rule.parse(">= -0.0005")
    assert (drop.value, drop.relative) == (-0.0005, False)
    assert drop.judge(0.999, 0.9986, None, None)[0] == "ok"
    assert drop.judge(0.999, 0.989, None, None)[0] == "regression"
    assert drop.judge(0.999, float("nan"), None, None)[0] == "regression"
    for bad in ("~ 5%", "<= 5%%", "<= fast"):
        with pytest.raises(ValueError, match="regression rule"):
            Rule.parse(bad)


def test_the_recipe_section_covers_every_metric_and_rejects_bad_rules(write_recipe):
    assert set(RegressionSection.model_fields) == set(REGRESSION_METRICS)
    path = write_recipe(text=RECIPE + 'regression: {p50_ms: "<= +5%", cosine: ">= -0.001"}\n')
    assert parse_recipe(path.read_text(), source=path).regression.rules() == {
        "p50_ms": "<= +5%",
        "cosine": ">= -0.001",
    }
    path = write_recipe(text=RECIPE + 'regression: {p50_ms: "5 percent"}\n')
    with pytest.raises(RecipeError, match=r"regression\.p50_ms"):
        parse_recipe(path.read_text(), source=path)


class _RunReport:
    """The two things `Against.apply` reads of a RunReport: its dict and its selection (plus gates)."""

    def __init__(self, data: dict, selection: dict):
        self.data, self.selection, self.gates = data, selection, []

    def to_dict(self) -> dict:
        return self.data


def test_regressions_of_unchosen_target_candidates_do_not_count(base):
    from optcli.compare import Against

    folder, report = base
    slower = pinned(report, result(report)["latency_ms"]["p50"] * 2, 0.01)
    base_side = pinned(report, result(report)["latency_ms"]["p50"], 0.01)
    recipe = parse_recipe(RECIPE)
    chosen_other = _RunReport(slower, {"candidates": [ENGINE, "ov-bf16"], "chosen": "ov-bf16"})
    Against("base.json", base_side).apply(recipe, chosen_other, folder / "new.json")
    regressed = [g for g in chosen_other.gates if g.name == "regression.p50_ms" and g.status == "fail"]
    assert regressed and not any(g.counts for g in regressed)  # not deployed: shown, not counted

    chosen_self = _RunReport(slower, {"candidates": [ENGINE], "chosen": ENGINE})
    Against("base.json", base_side).apply(recipe, chosen_self, folder / "new.json")
    assert any(g.counts and g.status == "fail" for g in chosen_self.gates if g.name == "regression.p50_ms")
