"""Chapter 6's campaign rule (defectlib.selection.campaign_verdicts): validation only, seed spread to beat."""
import math

import numpy as np
import pytest

from defectlib import selection

FLAT = [0.2, 0.3, 0.35, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]   # converged whatever its level
RISING = [0.1, 0.15, 0.2, 0.25, 0.3, 0.33, 0.35, 0.37, 0.39, 0.42]   # a new best in its last fifth


def run(fold, seed, val, curve=None, test=0.0):
    curve = [v - 0.4 + val for v in (curve or FLAT)]
    return {"run_id": f"f{fold}s{seed}", "fold": fold, "seed": seed, "config": {"train": {"steps": 4000}},
            "history": [{"val_miou": v, "step": 400 * (k + 1)} for k, v in enumerate(curve)],
            "best_epoch": 1 + int(np.argmax(curve)), "val": {"miou": max(curve)}, "test": {"miou": test}}


def arm(*vals, second=None):
    runs = [run(f, f, v) for f, v in enumerate(vals)]
    if second:
        runs += [run(f, f + selection.SECOND_SEED, v) for f, v in enumerate(second)]
    return runs


def test_a_step_is_kept_only_when_its_mean_gain_beats_the_seed_spread():
    arms = {"reference": arm(0.40, 0.35, 0.38),
            "big": arm(0.45, 0.40, 0.41, second=[0.44, 0.41, 0.42]),         # seed spreads 1, 1, 1 points
            "small": arm(0.42, 0.36, 0.38, second=[0.40, 0.36, 0.37]),       # 2, 0, 1; +0.5 point: inside
            "worse": arm(0.30, 0.30, 0.30)}
    assert selection.second_seed_arms(arms) == ["big", "small"]
    assert selection.seed_spread(arms) == pytest.approx(0.01)
    table = selection.campaign_verdicts(arms, "reference")
    assert list(table.index) == ["big", "small", "worse"]
    assert table.loc["big", "gain on fold 0"] == pytest.approx(0.445 - 0.40)
    assert table.loc["small", "mean gain"] == pytest.approx((0.01 + 0.01 - 0.005) / 3)
    assert list(table["decision"]) == ["kept", "not kept", "not kept"]
    assert selection.kept_steps(table, {"big": "loss", "small": "loss", "worse": "decoder"}) == ["big"]


def test_the_campaign_reads_second_seeds_of_the_named_arms_only():
    arms = {"reference": arm(0.40, 0.35, 0.38, second=[0.30, 0.30, 0.30]),   # its second seeds: ladder runs
            "big": arm(0.45, 0.40, 0.41, second=[0.44, 0.41, 0.42]),
            "small": arm(0.42, 0.36, 0.38, second=[0.40, 0.36, 0.37]),
            "worse": arm(0.30, 0.30, 0.30)}
    store = {(a, r["fold"], r["seed"]): r for a, rs in arms.items() for r in rs}
    read = lambda a, fold, seed: store.get((a, fold, seed))
    runs = selection.campaign_records(read, list(arms))
    assert {a: len(rs) for a, rs in runs.items()} == {"reference": 3, "big": 6, "small": 6, "worse": 3}
    assert selection.campaign_verdicts(runs, "reference").loc["small", "decision"] == "not kept"
    # read with every seed, the reference's later runs would have turned "small" into a kept step
    assert selection.campaign_verdicts(arms, "reference").loc["small", "decision"] == "kept"


def test_nothing_is_decided_before_the_runs_and_the_second_seeds_are_there():
    arms = {"reference": arm(0.40, 0.35, 0.38), "big": arm(0.45, 0.40, 0.41), "partial": arm(0.5, 0.5)}
    table = selection.campaign_verdicts(arms, "reference")
    assert math.isnan(table.loc["partial", "mean gain"])
    assert table.loc["partial", "decision"] == "waiting for runs"
    assert table.loc["big", "decision"] == "waiting for second seeds"
    assert math.isnan(selection.seed_spread(arms))


def test_pending_decisions_are_exactly_the_ones_a_later_run_can_change():
    scenarios = [{"reference": arm(0.40, 0.35, 0.38), "big": arm(0.45, 0.40, 0.41), "partial": arm(0.5, 0.5)},
                 {"reference": arm(0.40, 0.35, 0.38, second=[0.41, 0.36, 0.38]),
                  "rising": [run(0, 0, 0.45, RISING)]},
                 {"reference": arm(0.40, 0.35, 0.38),
                  "big": arm(0.45, 0.40, 0.41, second=[0.44, 0.41, 0.42]),
                  "small": arm(0.42, 0.36, 0.38, second=[0.40, 0.36, 0.37])}]
    seen = {d for arms in scenarios for d in selection.campaign_verdicts(arms, "reference")["decision"]}
    assert seen == {"waiting for runs", "waiting for second seeds", "not converged", "kept", "not kept"}
    assert seen - {"kept", "not kept"} == selection.PENDING_DECISIONS
    last = selection.campaign_verdicts(scenarios[1], "reference", spread=0.01, last_budget=True)
    assert list(last["decision"]) == ["not kept (still rising)"]
    assert "not kept (still rising)" not in selection.PENDING_DECISIONS


def test_a_step_still_rising_at_the_budget_is_not_judged():
    arms = {"reference": arm(0.40, 0.35, 0.38, second=[0.41, 0.36, 0.38]),
            "rising": [run(0, 0, 0.45, RISING), run(1, 1, 0.45), run(2, 2, 0.45),
                       run(0, 5, 0.45), run(1, 6, 0.45), run(2, 7, 0.45)]}
    assert selection.campaign_verdicts(arms, "reference").loc["rising", "decision"] == "not converged"


def test_an_arm_still_rising_goes_to_the_doubled_budget_judged_with_the_campaigns_spread():
    arms = {"reference": arm(0.40, 0.35, 0.38, second=[0.41, 0.36, 0.38]),
            "rising": [run(0, 0, 0.45, RISING), run(1, 1, 0.45), run(2, 2, 0.45)],
            "flat": arm(0.41, 0.36, 0.38, second=[0.41, 0.36, 0.37])}
    verdicts = selection.campaign_verdicts(arms, "reference")
    assert selection.doubled_budget_arms(verdicts) == ["rising"]
    spread = selection.seed_spread(arms)
    doubled = {"reference": arm(0.42, 0.37, 0.40), "rising": arm(0.47, 0.40, 0.41)}   # first seeds only
    assert selection.campaign_verdicts(doubled, "reference", spread=spread).loc["rising", "decision"] == "kept"
    doubled["rising"] = arm(0.42, 0.38, 0.40)                                           # +0.3: inside the spread
    assert selection.campaign_verdicts(doubled, "reference", spread=spread).loc["rising", "decision"] == "not kept"
    assert selection.campaign_verdicts(doubled, "reference").loc["rising", "decision"] == "waiting for second seeds"


def test_one_run_still_rising_leaves_the_arm_unconverged_before_its_other_folds_land():
    doubled = {"reference": arm(0.42), "rising": [run(0, 0, 0.47, RISING)]}          # fold 0 of three landed
    spread = 0.038
    verdicts = selection.campaign_verdicts(doubled, "reference", spread=spread)
    assert verdicts.loc["rising", "decision"] == "not converged"
    assert selection.doubled_budget_arms(verdicts) == ["rising"]
    doubled["rising"] = arm(0.47)                                                     # the same run, flat
    assert selection.campaign_verdicts(doubled, "reference", spread=spread).loc["rising", "decision"] \
        == "waiting for runs"


def test_an_arm_still_rising_at_the_last_doubling_is_not_kept():
    assert selection.FOLLOW_UP_DOUBLINGS == 2                                         # 4000 -> 8000 -> 16000
    last = {"reference": arm(0.42, 0.37, 0.40), "rising": [run(0, 0, 0.60, RISING), *arm(0.60, 0.60)[1:]]}
    verdicts = selection.campaign_verdicts(last, "reference", spread=0.038, last_budget=True)
    assert verdicts.loc["rising", "decision"] == "not kept (still rising)"
    assert selection.kept_steps(verdicts, {"rising": "augmentation"}) == []
    # decided by the arm's first run, before any run of the reference has landed
    first = {"reference": [], "rising": [run(0, 0, 0.60, RISING)]}
    assert selection.campaign_verdicts(first, "reference", spread=0.038, last_budget=True) \
        .loc["rising", "decision"] == "not kept (still rising)"
    # a reference still rising at the last budget leaves the arm unjudged too, so it is not kept
    last = {"reference": [run(0, 0, 0.42, RISING), *arm(0.42, 0.37, 0.40)[1:]], "flat": arm(0.60, 0.60, 0.60)}
    assert selection.campaign_verdicts(last, "reference", spread=0.038, last_budget=True) \
        .loc["flat", "decision"] == "not kept (still rising)"
    # a converged arm at the last budget is judged as at any other
    last = {"reference": arm(0.42, 0.37, 0.40), "flat": arm(0.47, 0.42, 0.45)}
    assert selection.campaign_verdicts(last, "reference", spread=0.038, last_budget=True) \
        .loc["flat", "decision"] == "kept"


def test_the_longer_budget_is_a_step_only_when_the_reference_gains_more_than_the_seed_spread():
    calibrated = arm(0.40, 0.35, 0.38)
    at_16000 = lambda runs: [{**r, "config": {"train": {"steps": 16000}}} for r in runs]
    longer = at_16000(arm(0.45, 0.40, 0.43))
    verdict = selection.budget_step_verdict(calibrated, longer, 16000, spread=0.038)
    assert list(verdict.index) == ["16000 steps"]
    assert verdict.loc["16000 steps", "mean gain"] == pytest.approx(0.05)
    decide = lambda runs, spread=0.038: \
        selection.budget_step_verdict(calibrated, runs, 16000, spread).loc["16000 steps", "decision"]
    assert decide(longer) == "kept"
    assert decide(longer, spread=0.06) == "not kept"
    assert decide(longer[:2]) == decide([]) == "waiting for runs"
    assert decide(at_16000([run(0, 0, 0.50, RISING)]) + longer[1:]) == "not kept (still rising)"
    with pytest.raises(ValueError, match="16000 steps, not \\[4000\\]"):
        decide([*longer, run(0, 5, 0.4)])


def test_an_arm_still_rising_gets_no_second_seed_at_the_budget():
    arms = {"reference": arm(0.40, 0.35, 0.38),
            "rising": [run(0, 0, 0.50, RISING), run(1, 1, 0.45), run(2, 2, 0.45)],   # best mean, fold 0 rising
            "flat": arm(0.41, 0.36, 0.38),
            "worse": arm(0.30, 0.30, 0.30)}
    assert selection.second_seed_arms(arms) == ["flat", "reference"]
    arms["rising"][0] = run(0, 0, 0.50)                                                # the same arm, flat
    assert selection.second_seed_arms(arms) == ["rising", "flat"]
    verdicts = selection.campaign_verdicts(arms, "reference")
    assert verdicts.loc["rising", "decision"] == "waiting for second seeds"


def test_the_rule_never_reads_test_metrics():
    arms = {"reference": arm(0.40, 0.35, 0.38, second=[0.42, 0.36, 0.37]),
            "big": arm(0.45, 0.40, 0.41, second=[0.44, 0.41, 0.42])}
    assert selection.campaign_verdicts(arms, "reference").loc["big", "decision"] == "kept"
    before = selection.campaign_verdicts(arms, "reference")
    for runs in arms.values():
        for r in runs:
            r["test"]["miou"] = 0.99
    assert before.equals(selection.campaign_verdicts(arms, "reference"))


def test_the_campaign_tables_show_every_run_and_every_decision():
    from defectlib import report

    arms = {"reference": arm(0.40, 0.35, 0.38), "big": arm(0.45, 0.40, 0.41, second=[0.44, 0.41, 0.42])}
    for runs in arms.values():
        for r in runs:
            r.update(wall_seconds=1800.0, val={**r["val"], "defect_miou": 0.3}, test={"miou": 0.5, "defect_miou": 0.2})
    runs = report.campaign_runs_table(arms)
    assert list(runs.index)[:4] == [("reference", 0, 0), ("reference", 1, 1), ("reference", 2, 2), ("big", 0, 0)]
    assert runs.loc[("big", 0, 5), "val mIoU"] == "44.0" and runs.loc[("big", 0, 5), "test mIoU (not used)"] == "50.0"
    verdicts = report.campaign_verdict_table(selection.campaign_verdicts(arms, "reference"), {"big": "a bigger model"})
    assert verdicts.loc["big", "changes"] == "a bigger model"
    assert verdicts.loc["big", "gain on fold 0 (points)"] == "+4.5"
    assert verdicts.loc["big", "decision"] == "waiting for second seeds"   # the reference, second best, has one seed


def test_the_budget_table_puts_each_arm_and_fold_on_a_row_and_each_budget_in_a_column():
    from defectlib import report

    four = {"reference": arm(0.40, 0.35, 0.38, second=[0.42, 0.36, 0.37]), "d4": arm(0.45, 0.40, 0.41)}
    eight = {"reference": arm(0.49, 0.35, 0.38)[:1], "d4": arm(0.53, 0.40, 0.41)[:1]}
    table = report.budget_table({8000: eight, 4000: four})
    assert list(table.columns) == ["4000 steps", "8000 steps"]
    assert table.loc[("reference", 0), "4000 steps"] == "40.0"    # the first seed; the second is left out
    assert table.loc[("reference", 0), "8000 steps"] == "49.0"
    assert table.loc[("d4", 2), "8000 steps"] == ""                 # no run at that budget
    assert len(table) == 6
    assert report.budget_table({4000: {}}).empty


def test_the_campaign_runs_table_shows_image_level_validation_where_records_have_it():
    from defectlib import report

    arms = {"reference": arm(0.40, 0.35, 0.38)}
    for r in arms["reference"]:
        r.update(test={"miou": 0.5, "defect_miou": 0.2}, val={**r["val"], "defect_miou": 0.3})
    first = arms["reference"][0]
    first["val"]["image_auroc"] = 0.875
    # four defect-free images, one of them with 64 predicted defect pixels; one defective image
    free = [[100, 0, 0, 0]] * 3 + [[36, 64, 0, 0]]
    first["per_image"] = {"val": {"names": list("abcde"), "scores": [0.1] * 5,
                                  "confusion": free + [[90, 0, 0, 10]]}}
    table = report.campaign_runs_table(arms)
    assert table.loc[("reference", 0, 0), "val image AUROC"] == "87.5"
    assert table.loc[("reference", 0, 0), "val false alarms (%)"] == "25.0"
    assert table.loc[("reference", 1, 1), "val image AUROC"] == ""


def test_a_campaign_of_the_reference_alone_has_an_empty_verdict_table():
    table = selection.campaign_verdicts({"reference": arm(0.4, 0.35, 0.38)}, "reference")
    assert table.empty and list(table.columns)[-3:] == ["mean gain", "seed spread", "decision"]


def _image_table(scores, defective):
    free, defect = [1, 0, 0, 0], [0, 0, 0, 1]   # 2x2 confusion, flattened: truth row, prediction column
    return {"names": [f"i{k}" for k in range(len(scores))], "scores": list(scores),
            "confusion": [defect if d else free for d in defective]}


def test_the_threshold_check_is_held_out_and_can_reject_a_threshold():
    # scores separate the classes at 0.8, not at 0.5: a fitted threshold wins on held-out regions
    scores = [0.6, 0.65, 0.7, 0.75, 0.9, 0.95, 0.85, 0.92]
    defective = [0, 0, 0, 0, 1, 1, 1, 1]
    groups = ["a", "b", "c", "d", "e", "f", "g", "h"]
    won = selection.threshold_cross_check(_image_table(scores, defective), groups)
    assert won["at_half"] == 0.5 and won["at_threshold"] > won["at_half"]
    # two regions whose scores separate at different points: each half's threshold fails on the other
    scores = [0.6, 0.7, 0.9, 0.95, 0.1, 0.2, 0.55, 0.6]
    defective = [0, 0, 1, 1, 0, 0, 1, 1]
    lost = selection.threshold_cross_check(_image_table(scores, defective), ["A"] * 4 + ["B"] * 4)
    assert lost == {"at_threshold": 0.5, "at_half": 0.75}
