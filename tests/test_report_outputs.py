"""The files CI systems ingest, from real `optcli run`s: report.junit.xml valid against the JUnit XSD,
report.html (self-contained, charts checked in headless Chromium), report.md as a PR comment, the
GitHub job summary, and report.json against its committed JSON Schema."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MODEL_FILE

from optcli.report.html import render_html
from optcli.report.junit import JUnitCase, junit_xml, write_junit
from optcli.report.junit_cases import render_junit
from optcli.report.markdown import render_markdown
from optcli.report.schema import SCHEMA_FILE, report_schema

etree = pytest.importorskip("lxml.etree", reason="lxml (the dev extra) validates JUnit against its XSD")
jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (the dev extra) checks report.json")

XSD = Path(__file__).parent / "data" / "junit.xsd"
CHROMIUM = "/usr/bin/chromium"
RECIPE = """\
name: outputs
model:
  source: models.py:make_two_layer
  inputs:
    - {name: x, shape: [batch, 16]}
  dims:
    batch: {min: 1, opt: 4, max: 32}
export: {exporter: torchscript}
quantization:
  precision: int8
  calibration: {samples: 16, batch_size: 8}
build:
  - {name: ort-fp32, engine: onnxruntime, artifact: exported}
  - {name: ort-int8, engine: onnxruntime, artifact: quantized}
validate: {samples: 16, batch_size: 16, gates: {cosine: ">= 0.9"}}
benchmark: {batch_sizes: [1], warmup: 1, iterations: 20, rounds: 2, remeasure: 0, gates: {speedup: ">= 1000"}}
report: {formats: [json, md, junit, html]}
"""


def optcli(*args, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "optcli", *map(str, args)],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One real run: a speed gate that fails (>= 1000x), validate gates that pass, the per-layer
    diagnosis on, two --set overrides, and a job summary file that already holds a previous step's."""
    folder = tmp_path_factory.mktemp("outputs")
    (folder / "models.py").write_text(MODEL_FILE)
    (folder / "recipe.yaml").write_text(RECIPE)
    summary = folder / "summary.md"
    summary.write_text("previous step\n")
    env = {"OPTCLI_CACHE_DIR": str(folder / "cache"), "GITHUB_STEP_SUMMARY": str(summary)}
    sets = ["quantization.diagnose=true", "validate.samples=32"]
    result = optcli(
        "run", "recipe.yaml", "--out", "out", "-q", "--set", sets[0], "-s", sets[1], cwd=folder, env=env
    )
    assert result.returncode == 1, result.stderr
    out = folder / "out"
    return {
        "out": out,
        "report": json.loads((out / "report.json").read_text()),
        "summary": summary,
        "sets": sets,
    }


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory):
    """A real run that stops with exit 2 in the load stage (the model factory returns an int)."""
    folder = tmp_path_factory.mktemp("failed")
    (folder / "models.py").write_text(MODEL_FILE)
    (folder / "recipe.yaml").write_text(RECIPE.replace("make_two_layer", "not_a_module"))
    result = optcli(
        "run", "recipe.yaml", "--out", "out", "-q", cwd=folder, env={"OPTCLI_CACHE_DIR": str(folder)}
    )
    assert result.returncode == 2, result.stderr
    out = folder / "out"
    return {"out": out, "report": json.loads((out / "report.json").read_text())}


def junit_schema():
    return etree.XMLSchema(etree.parse(str(XSD)))


def valid_junit(text: str):
    document = etree.fromstring(text.encode())
    schema = junit_schema()
    assert schema.validate(document), schema.error_log
    return document


def test_junit_of_a_run_has_one_testcase_per_gate_and_is_valid(run):
    report, out = run["report"], run["out"]
    document = valid_junit((out / "report.junit.xml").read_text())
    cases = document.findall(".//testcase")
    assert len(cases) == len(report["gates"]) >= 4
    suite = document.find("testsuite")
    failed = [g for g in report["gates"] if not g["passed"]]
    assert suite.get("tests") == str(len(cases)) and suite.get("failures") == str(len(failed)) == "2"
    for case, gate in zip(cases, report["gates"]):
        assert case.get("classname") == f"{gate['name'].split('.')[0]}.{gate['engine']}"
        failure = case.find("failure")
        assert (failure is not None) == (not gate["passed"])
    speed = next(c for c in cases if c.get("classname") == "benchmark.ort-int8").find("failure")
    message = speed.get("message")
    assert "threshold >= 1000" in message and "95% interval [" in message and ": fail" in message
    gate = next(g for g in report["gates"] if g["name"] == "benchmark.speedup" and g["engine"] == "ort-int8")
    assert f"{gate['value']:.6g}" in message


def test_junit_xsd_rejects_what_ci_readers_reject():
    """The schema is not vacuous: documents Ant's format forbids fail it."""
    schema = junit_schema()
    good = junit_xml("s", [JUnitCase("a", "c.e", failure="value 1, threshold >= 2")])
    assert schema.validate(etree.fromstring(good.encode()))
    broken = [
        good.replace('classname="c.e" ', ""),  # a testcase without classname
        good.replace('type="failure"', ""),  # a failure without type
        good.replace("</failure>", '</failure><error type="e">x</error>'),  # two outcomes
        good.replace(
            'tests="1" failures="1" errors="0" skipped', 'tests="one" failures="1" errors="0" skipped'
        ),
    ]
    stamp = etree.fromstring(good.encode()).find("testsuite").get("timestamp")
    broken.append(good.replace(stamp, stamp + "+02:00"))  # Ant's timestamp carries no zone
    for text in broken:
        assert text != good and not schema.validate(etree.fromstring(text.encode())), text


def test_junit_writer_outcomes_counts_and_atomic_write(tmp_path):
    cases = [
        JUnitCase("fails", "v.e", 0.5, failure="bad\x01 value\nsecond line"),
        JUnitCase("errs", "v.e", error="boom", failure="ignored: an error outranks a failure"),
        JUnitCase("skips", "v.e", skipped="not counted", system_out="value 3"),
        JUnitCase("passes", "v.e", system_out="value 4 <= 5 & fine"),
    ]
    path = tmp_path / "r.junit.xml"
    write_junit(path, "suite", cases)
    assert [p.name for p in tmp_path.iterdir()] == ["r.junit.xml"]  # no temp file left beside it
    document = valid_junit(path.read_text())
    suite = document.find("testsuite")
    counts = [suite.get(k) for k in ("tests", "failures", "errors", "skipped", "time")]
    assert counts == ["4", "1", "1", "1", "0.500"]
    fails, errs, skips, passes = document.findall(".//testcase")
    assert fails.find("failure").get("message") == "bad value" and "\x01" not in path.read_text()
    assert errs.find("error").text == "boom" and errs.find("failure") is None
    assert (
        skips.find("skipped").get("message") == "not counted" and skips.find("system-out").text == "value 3"
    )
    assert passes.find("system-out").text == "value 4 <= 5 & fine" and len(passes) == 1


def test_inconclusive_gates_follow_passed_in_junit(run):
    report = copy.deepcopy(run["report"])
    speed = [g for g in report["gates"] if g["name"] == "benchmark.speedup"]
    speed[0].update(status="inconclusive", passed=True)
    speed[1].update(status="inconclusive", passed=False)
    document = valid_junit(render_junit(report))
    first, second = (
        next(c for c in document.findall(".//testcase") if c.get("classname") == f"benchmark.{g['engine']}")
        for g in speed
    )
    assert first.find("skipped").get("message").startswith("inconclusive, counted as pass")
    assert second.find("failure").get("message").startswith("inconclusive: ")


def test_a_run_that_stopped_is_an_error_testcase(failed_run):
    report, out = failed_run["report"], failed_run["out"]
    document = valid_junit((out / "report.junit.xml").read_text())
    (case,) = [c for c in document.findall(".//testcase") if c.find("error") is not None]
    assert case.get("classname") == "optcli.load" and document.find("testsuite").get("errors") == "1"
    assert report["error"]["message"] in case.find("error").text and "exit code 2" in case.find("error").text
    html = (out / "report.html").read_text()
    assert "The run did not finish" in html and "not a verdict" in html


def test_report_json_validates_against_the_committed_schema(run, failed_run):
    schema = report_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for report in (run["report"], failed_run["report"]):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(report)]
        assert not errors, errors
    broken = copy.deepcopy(run["report"])
    broken["provenance"]["exported_onnx_sha256"] = broken["provenance"]["exported_onnx_sha256"][:16]
    broken["gates"][0]["threshold"] = ">= 0.99"  # schema 1's string form
    assert len(list(validator.iter_errors(broken))) == 2


def test_report_schema_command_prints_the_committed_file(tmp_path):
    result = optcli("report", "schema", cwd=tmp_path, env={})
    assert result.returncode == 0, result.stderr
    committed = (Path(__file__).parents[1] / "optcli" / "report" / SCHEMA_FILE).read_text()
    assert result.stdout == committed and json.loads(result.stdout)["properties"]["schema_version"] == {
        "const": 2
    }


def test_report_json_records_times_command_digests_and_sizes(run):
    report, out = run["report"], run["out"]
    assert report["schema_version"] == 2
    assert report["started_at"].endswith("Z") and report["started_at"] < report["ended_at"]
    assert report["command"]["overrides"] == run["sets"]
    assert report["command"]["line"].startswith("optcli run recipe.yaml --out out -q --set ")
    manifest = json.loads((out / "manifest.json").read_text())["artifacts"]
    assert set(report["artifacts"]) == set(manifest) == {"exported", "quantized"}
    for name, artifact in report["artifacts"].items():
        assert artifact["sha256"] == manifest[name]["sha256"] and len(artifact["sha256"]) == 64
        assert artifact["bytes"] == (out / artifact["path"]).stat().st_size > 0
    assert report["provenance"]["exported_onnx_sha256"] == manifest["exported"]["sha256"]
    assert len(report["recipe"]["sha256"]) == 64 == len(report["provenance"]["calibration_data_sha256"])


def test_report_md_is_a_pr_comment(run):
    report, out = run["report"], run["out"]
    markdown = (out / "report.md").read_text()
    first, *_ = markdown.splitlines()
    assert first.startswith("## optcli: `outputs` - FAIL: fastest (failing) `ort-")
    speed = next(r for r in report["benchmark"]["results"] if first.split("`")[3] == r["engine"])
    low, high = speed["speedup_ci"]
    assert f"{speed['speedup']:.2f}x [{low:.2f}, {high:.2f}] vs pytorch-eager-fp32 at batch 1" in first
    assert "top-1 agreement" in first and "size " in first and " KiB -> " in first
    # Failures open, first; passing gates folded.
    assert (
        markdown.index("### Failed gates (2)") < markdown.index("<details>") < markdown.index("### Accuracy")
    )
    folded = markdown[markdown.index("<details>") : markdown.index("</details>")]
    assert "Passing gates (3)" in folded and "validate.cosine" in folded and "FAIL" not in folded
    packages = report["environment"]["packages"]
    versions = next(line for line in markdown.splitlines() if line.startswith("Versions: "))
    for name in ("torch", "onnx", "onnxruntime"):
        assert f"{name} {packages[name]}" in versions
    assert markdown.rstrip().splitlines()[-1] == "<!-- optcli-report:outputs -->"
    assert render_markdown(report) == markdown
    # The same run as if its gates had passed and --target had chosen the INT8 engine.
    chosen = copy.deepcopy(report)
    chosen["verdict"], chosen["selection"] = "pass", {"target": "cpu", "chosen": "ort-int8", "batch_size": 1}
    for gate in chosen["gates"]:
        gate.update(status="pass", passed=True)
    first = render_markdown(chosen).splitlines()[0]
    assert first.startswith("## optcli: `outputs` - PASS: deploy `ort-int8` (quantized.onnx, int8")
    quantized = chosen["artifacts"]["quantized"]["bytes"] / 1024
    assert first.endswith(f" -> {quantized:.1f} KiB") and "Failed gates" not in render_markdown(chosen)


def test_github_step_summary_gets_the_final_markdown_appended(run):
    markdown = (run["out"] / "report.md").read_text()
    assert run["summary"].read_text() == "previous step\n" + markdown  # once: not the 'running' report


def html_dom(path: Path, tmp_path: Path) -> str:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom", path.as_uri(),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "</html>" in result.stdout, result.stderr[-2000:]
    return result.stdout


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (apt-get install chromium)"
)
def test_report_html_charts_render_in_headless_chromium(run, tmp_path):
    from lxml import html

    report, path = run["report"], run["out"] / "report.html"
    text = path.read_text()
    assert (
        "<script" not in text
        and "<link" not in text
        and "http" not in text.replace("http://www.w3.org/2000/svg", "")
    ), "report.html must not load anything from the network"
    dom = html.fromstring(html_dom(path, tmp_path))
    (chart,) = dom.xpath("//svg[@class='latency']")
    engines = [r["engine"] for r in report["benchmark"]["results"]]
    assert len(engines) == 3
    for engine in engines:
        (row,) = chart.xpath(f".//g[@data-engine='{engine}']")
        assert row.xpath(".//text")[0].text_content() == engine
        assert len(row.xpath(".//circle")) >= 20  # every timed iteration (timings.json) is a dot
        assert len(row.xpath(".//line")) >= 3  # p50, p90, p99 marks
    (layers,) = dom.xpath("//svg[@class='layers']")
    nodes = [layer["node"] for layer in report["quantization"]["diagnosis"]]
    assert [g.get("data-node") for g in layers.xpath(".//g[@class='layer']")] == nodes
    rows = dom.xpath("//h2[text()='Gates']/following-sibling::table[1]//tbody/tr")
    assert len(rows) == len(report["gates"]) and rows[0].get("class") == "fail"
    assert "FAIL" in dom.xpath("//h1")[0].text_content()


def test_html_without_raw_timings_draws_the_percentiles(run):
    from lxml import html

    dom = html.fromstring(render_html(run["report"], timings=None))
    rows = dom.xpath("//svg[@class='latency']//g[@class='engine']")
    assert len(rows) == 3 and not dom.xpath("//svg//circle")
    assert all(len(row.xpath(".//line")) == 4 for row in rows)  # p50-p99 range and three marks


def test_renderers_read_schema_1_reports(run):
    """A report an older optcli wrote (thresholds as strings, no status) still renders."""
    old = copy.deepcopy(run["report"])
    old["schema_version"] = 1
    for gate in old["gates"]:
        gate["threshold"] = gate.pop("threshold_text")
        del gate["status"]
    for key in ("started_at", "ended_at", "command", "artifacts"):
        del old[key]
    markdown = render_markdown(old)
    assert "| benchmark.speedup | ort-int8 |" in markdown and "| >= 1000 | FAIL |" in markdown
    assert render_junit(old).count("<failure") == 2
    assert "<svg" in render_html(old)
