"""`target: cpu`: every available CPU candidate is built, validated, benchmarked and ranked."""

from __future__ import annotations

from optcli.console import SilentUI
from optcli.pipeline import run_recipe
from optcli.recipe import load_recipe

OUTLIER = """model:
  source: models.py:make_outlier_mlp
  inputs:
    - {name: x, shape: [batch, 16]}"""


def test_fastest_passing_candidate_is_chosen_and_losers_explained(write_recipe, tmp_path):
    """INT8 breaks the outlier model, so the FP32 candidate wins and the INT8 one says why it lost."""
    path = write_recipe(
        model=OUTLIER,
        quantization="quantization: {precision: int8, calibration: {samples: 64}}",
        # Every candidate validated: which ones pruning leaves out is tests/test_fastest_first.py's.
        validate="validate: {samples: 128, gates: {top1_agreement: '>= 0.97'}, prune_ratio: null}",
        build="build: []",
    )
    report = run_recipe(load_recipe(path, ["target=cpu"]), tmp_path / "run", SilentUI()).to_dict()
    selection = report["selection"]
    ranking = {row["engine"]: row for row in selection["ranking"]}
    assert {"ort-fp32", "ort-int8"} <= set(ranking)
    assert not ranking["ort-int8"]["passed"] and ranking["ort-int8"]["reason"].startswith(
        "failed validate.top1"
    )
    assert selection["chosen"] != "ort-int8" and ranking[selection["chosen"]]["passed"]
    assert report["verdict"] == "pass"  # the losing candidate's failed gate is information, not a failure
    int8_gate = next(
        g for g in report["gates"] if g["engine"] == "ort-int8" and g["name"] == "validate.top1_agreement"
    )
    assert not int8_gate["passed"] and int8_gate["counts"] is False
    for missing in selection["not_available"]:
        assert missing["fix"]  # candidates this machine cannot run are listed with their install hint


def test_no_passing_candidate_fails_the_run(write_recipe, tmp_path):
    path = write_recipe(validate="validate: {samples: 32, gates: {cosine: '>= 1.1'}}", build="build: []")
    report = run_recipe(load_recipe(path, ["target=cpu"]), tmp_path / "run", SilentUI()).to_dict()
    assert report["selection"]["chosen"] is None and report["verdict"] == "fail"
