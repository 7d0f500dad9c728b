"""The greedy recovery loop, on a scripted metric (the end-to-end run is in test_recovery_e2e)."""

from __future__ import annotations

from optcli.quantization.recovery import recover


def metric_where(bad: set[str], base: float = 0.5):
    """Accuracy rises by 0.2 for each truly bad layer excluded; other exclusions do nothing."""
    calls = []

    def evaluate(excluded: list[str]) -> float:
        calls.append(list(excluded))
        return base + 0.2 * len(bad & set(excluded))

    return evaluate, calls


def test_keeps_only_layers_that_help_and_stops_at_the_gate():
    evaluate, calls = metric_where({"b", "d"})
    result = recover(
        ["a", "b", "c", "d", "e"], evaluate, initial_value=0.5, target=0.9, max_trials=10, time_budget_s=60
    )
    assert result.passed and result.excluded == ["b", "d"]
    assert calls == [["a"], ["b"], ["b", "c"], ["b", "d"]]  # 'e' never tried: the gate passed
    assert [t.kept for t in result.trials] == [False, True, False, True]


def test_trial_budget_gives_a_clear_failure():
    evaluate, _ = metric_where({"z"})
    result = recover(
        [["a"], ["b"], ["c"]], evaluate, initial_value=0.5, target=0.9, max_trials=2, time_budget_s=60
    )
    assert not result.passed and result.stopped_by == "max_trials (2)"
    assert result.value == 0.5 and result.target == 0.9


def test_time_budget():
    ticks = iter(range(0, 1000, 30))
    evaluate, calls = metric_where(set())
    result = recover(
        ["a", "b", "c", "d"],
        evaluate,
        initial_value=0.1,
        target=0.9,
        max_trials=10,
        time_budget_s=100,
        clock=lambda: next(ticks),
    )
    assert not result.passed and result.stopped_by.startswith("time_budget_s") and len(calls) < 4


def test_lower_is_better_metrics_and_already_passing():
    result = recover(
        ["a"],
        lambda ex: 0.0,
        initial_value=0.001,
        target=0.01,
        higher_is_better=False,
        max_trials=3,
        time_budget_s=10,
    )
    assert result.passed and result.stopped_by == "already passing" and not result.trials


def test_groups_are_tried_together_and_overlaps_skipped():
    evaluate, calls = metric_where({"b", "c"}, base=0.4)
    result = recover(
        [["b", "c"], ["c"], ["a"]], evaluate, initial_value=0.4, target=0.8, max_trials=5, time_budget_s=60
    )
    assert result.passed and result.excluded == ["b", "c"] and calls == [["b", "c"]]
