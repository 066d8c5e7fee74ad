"""Selection rules: which arm, which combination, which final option; all on validation only.

Introduced in chapter 04 (loss ablation); chapter 05 adds :func:`combine_steps`,
chapter 06 the budget rule (:func:`budget_verdict`) and the campaign's
(:func:`campaign_verdicts`, reading :func:`campaign_records`), chapter 07 :func:`choose_final` and
:func:`accuracy_threshold`.

A rule reads validation metrics from run records and nothing else, so a test
split can never decide; it imports no run machinery (a rule that needs runs
evaluated again, such as test-time augmentation, takes the function that does
it as an argument).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from .metrics import per_image_confusions
from .records import run_convergence
from .stats import has_defect, mean_std, seed_means


def select_arm(arms: dict[str, Sequence[dict]], tolerance: float = 0.005) -> str:
    """The selection rule of the ablation chapters, on validation only.

    The arm with the highest mean validation mIoU (6 classes) over its runs
    wins; arms within ``tolerance`` (0.5 points) of it are decided by the
    higher mean validation defect mIoU.
    """
    means = {a: (mean_std([r["val"]["miou"] for r in rs])[0], mean_std([r["val"]["defect_miou"] for r in rs])[0])
             for a, rs in arms.items()}
    best = max(m for m, _ in means.values())
    close = [a for a, (m, _) in means.items() if m >= best - tolerance]
    return max(close, key=lambda a: means[a][1])

def combine_steps(arms: dict[str, Sequence[dict]], start: tuple[str, str],
                  steps: Sequence[tuple[str, str]]) -> str:
    """The "best combination" rule of the augmentation chapter, on validation only.

    Each step's arm is the arm before it plus one component. A component is
    kept when its arm's mean validation mIoU beats that of the arm before it;
    the combination is the starting augmentation followed by the kept
    components. The steps are cumulative, so each gain is read in the context
    of the components before it.

    Args:
        arms: records per arm.
        start: ``(arm, augment)`` the ladder starts from, e.g. ``("flips", "flips")``.
        steps: ``(arm, component)`` in ladder order; a component that replaces
            one before it is written ``"new-old"`` (``"d4-flips"``: the square's
            symmetries include the flips).

    Returns:
        An ``augment`` string, e.g. ``"d4+photometric"``.
    """
    mean = {a: mean_std([r["val"]["miou"] for r in rs])[0] for a, rs in arms.items()}
    previous, augment = start
    parts = [] if augment == "none" else augment.split("+")
    for arm, component in steps:
        if mean[arm] > mean[previous]:
            added, _, replaced = component.partition("-")
            parts = [p for p in parts if p != replaced] + [added]
        previous = arm
    return "+".join(parts) or "none"

def ranking_table(arms: dict[str, Sequence[dict]], tolerance: float = 0.005) -> tuple[pd.DataFrame, str]:
    """The arms ranked by mean validation mIoU, with the :func:`select_arm` winner marked; returns ``(table, winner)``."""
    winner = select_arm(arms, tolerance)
    table = pd.DataFrame({arm: {"mean validation mIoU (%)": 100 * mean_std([r["val"]["miou"] for r in rs])[0],
                                "mean validation defect mIoU (%)":
                                    100 * mean_std([r["val"]["defect_miou"] for r in rs])[0]}
                          for arm, rs in arms.items()}).T.sort_values("mean validation mIoU (%)", ascending=False)
    best = table["mean validation mIoU (%)"].max()
    table[f"within {100 * tolerance:.1f} points of the best"] = np.where(
        table["mean validation mIoU (%)"] >= best - 100 * tolerance, "yes", "")
    table["selected"] = np.where(table.index == winner, "winner", "")
    table.index.name = "arm"
    return table, winner

def accuracy_threshold(table: dict) -> float:
    """The image-score threshold with the highest "has a defect" accuracy on a per-image table.

    Candidates are the midpoints between consecutive distinct scores (and
    the ends); ties go to the lowest threshold. Choose it on validation, apply
    it to test.
    """
    scores = np.asarray(table["scores"], float)
    truth = has_defect(per_image_confusions(table))
    distinct = np.unique(scores)
    candidates = np.concatenate([[distinct[0] - 1e-6], (distinct[:-1] + distinct[1:]) / 2, [distinct[-1] + 1e-6]])
    accuracy = [np.mean((scores >= t) == truth) for t in candidates]
    return float(candidates[int(np.argmax(accuracy))])


def threshold_cross_check(table: dict, groups: Sequence, seed: int = 0) -> dict[str, float]:
    """Does a threshold fitted on validation images beat 0.5 on validation images it was not fitted on?

    The region groups of a per-image table (``groups``: one per image) are split at random into two
    halves; the :func:`accuracy_threshold` of each half is applied to the other. Returns the held-out
    "has a defect" accuracy over all images at the fitted thresholds (``at_threshold``) and at 0.5
    (``at_half``): a rule that keeps the threshold when the first is higher can fail, unlike a
    comparison on the images the threshold was fitted to.
    """
    names = np.asarray(groups, dtype=object)
    unique = sorted(set(groups), key=str)
    order = np.random.default_rng(seed).permutation(len(unique))
    half = {unique[k]: i % 2 for i, k in enumerate(order)}
    side = np.array([half[g] for g in names])
    scores = np.asarray(table["scores"], float)
    truth = has_defect(per_image_confusions(table))
    correct_fitted = correct_half = 0
    for fit_side in (0, 1):
        fit, held = side == fit_side, side != fit_side
        threshold = accuracy_threshold({k: [v[i] for i in np.flatnonzero(fit)] for k, v in table.items()})
        correct_fitted += int(np.sum((scores[held] >= threshold) == truth[held]))
        correct_half += int(np.sum((scores[held] >= 0.5) == truth[held]))
    return {"at_threshold": correct_fitted / len(scores), "at_half": correct_half / len(scores)}


#: How an option of :func:`tta_options` names a test-time augmentation mode.
TTA_LABELS = {"flips": "flip TTA"}

#: ``reevaluate(record, mode)``: the record with its validation metrics and per-image table recomputed
#: with test-time augmentation ``mode`` (:func:`defectlib.experiments.validation_with_tta`).
Reevaluate = Callable[[dict, str], dict]


def tta_options(arms: dict[str, Sequence[dict]], reevaluate: Reevaluate,
                modes: tuple[str, ...] = ("flips",)) -> dict[str, list[dict]]:
    """The options a selection rule compares when test-time augmentation is a candidate.

    Each arm's records as trained, and for each mode the same records
    re-evaluated by ``reevaluate``: ``{"long": [...], "long + flip TTA": [...]}``.
    """
    options = {}
    for arm, records in arms.items():
        options[arm] = list(records)
        for mode in modes:
            options[f"{arm} + {TTA_LABELS[mode]}"] = [reevaluate(r, mode) for r in records]
    return options


def split_option(option: str) -> tuple[str, str]:
    """``(arm, test-time augmentation mode)`` of an option name of :func:`tta_options`."""
    arm, _, label = option.partition(" + ")
    modes = {v: k for k, v in TTA_LABELS.items()}
    if label and label not in modes:
        raise ValueError(f"{option!r}: unknown test-time augmentation {label!r}; known: {sorted(modes)}")
    return arm, modes[label] if label else "none"


def choose_final(candidates: dict[str, Sequence[dict]], reevaluate: Reevaluate,
                 modes: tuple[str, ...] = ("flips",)) -> dict:
    """Chapter 7's rule, one candidate at a time, on validation only.

    Step 1 picks the trained arm (:func:`select_arm`, through :func:`ranking_table`);
    step 2 compares that arm's runs with and without each test-time augmentation
    (:func:`tta_options`) under the same rule.
    Returns ``{"arm", "tta", "option", "arms", "tta_options"}``: the chosen arm, its
    test-time augmentation mode, the chosen option's name, and the two ranking tables.
    """
    arms, arm = ranking_table(candidates)
    options, option = ranking_table(tta_options({arm: candidates[arm]}, reevaluate, modes))
    return {"arm": arm, "tta": split_option(option)[1], "option": option, "arms": arms, "tta_options": options}


#: A run has converged when the last fifth of its schedule raised its best validation mIoU by at most
#: this much (1 point; :func:`defectlib.records.convergence`).
CONVERGED_GAIN = 0.01

#: The convergence statistic the rule reads. Until chapter 6's 192 px calibration runs it was
#: ``last_fifth_gain`` (mean of the last fifth minus mean of the fifth before): with a validation every tenth
#: of a budget each fifth is the mean of two evaluations, and evaluations of a flat curve scatter by
#: about as much as the tolerance, so that statistic rejected curves whose best lay mid-schedule.
CONVERGENCE_STATISTIC = "best_gain_last_fifth"


def converged(record: dict, tolerance: float = CONVERGED_GAIN, statistic: str = CONVERGENCE_STATISTIC) -> bool:
    """Whether more training would have raised the checkpoint a run keeps.

    The run keeps its best validation evaluation; it has converged when the
    last fifth of its schedule raised that best by at most ``tolerance``
    (:data:`CONVERGENCE_STATISTIC`). A curve still climbing sets new bests in its
    last fifth and fails; a flat curve, however its evaluations scatter below
    its best, passes. ``statistic="last_fifth_gain"`` applies the rule as it first was.
    """
    return run_convergence(record)[statistic] <= tolerance


def still_rising(records: Sequence[dict], tolerance: float = CONVERGED_GAIN,
                 statistic: str = CONVERGENCE_STATISTIC) -> list[tuple[dict, float]]:
    """The runs that have not :func:`converged`, each with how much its last fifth raised its best
    (a fraction of mIoU), in the order given."""
    return [(r, run_convergence(r)[statistic]) for r in records if not converged(r, tolerance, statistic)]


def budget_verdict(records: Sequence[dict], tolerance: float = CONVERGED_GAIN,
                   statistic: str = CONVERGENCE_STATISTIC) -> dict:
    """The calibration's rule for a step budget, on validation only: it is kept when every run on it
    (every fold and seed) has :func:`converged`; otherwise the next calibration doubles it.

    Returns ``{"kept": bool, "steps": the budget, "next_steps": the budget to try next (None when kept),
    "not_converged": run ids still rising}``.
    """
    budgets = {r["config"]["train"]["steps"] for r in records}
    if len(budgets) != 1 or None in budgets:
        raise ValueError(f"a budget verdict needs runs of one step budget, got {sorted(budgets, key=str)}")
    steps = budgets.pop()
    rising = [r["run_id"] for r, _ in still_rising(records, tolerance, statistic)]
    return {"kept": not rising, "steps": steps, "next_steps": None if not rising else 2 * steps,
            "not_converged": rising}


#: A campaign run's seeds: the first on fold k is k, the second k + SECOND_SEED, so no seed repeats across
#: the five folds.
SECOND_SEED = 5


def _fold_means(records: Sequence[dict]) -> dict[int, float]:
    return {f: v["mean"] for f, v in seed_means(records, "val", "miou").items()}


def second_seed_arms(arms: dict[str, Sequence[dict]], n: int = 2) -> list[str]:
    """The ``n`` arms of a campaign (the reference among them) with the highest mean validation mIoU of
    their first seeds (seed = fold) over the folds: the ones that get a second seed before the choice.
    First seeds only, so that the second seeds cannot change which arms needed them.

    An arm with a first-seed run that has not :func:`converged` is passed over: the rule cannot judge it at
    this budget (:func:`doubled_budget_arms` judges it at twice the budget, with the campaign's seed spread),
    so a second seed at this budget would decide nothing about it."""
    first = {a: [r for r in rs if r["seed"] == r["fold"]] for a, rs in arms.items()}
    first = {a: rs for a, rs in first.items() if all(converged(r) for r in rs)}
    means = {a: float(np.mean(list(_fold_means(rs).values()))) for a, rs in first.items() if rs}
    return sorted(means, key=lambda a: -means[a])[:n]


def campaign_records(read: Callable[[str, int, int], dict | None], arms: Sequence[str],
                     folds: Sequence[int] = (0, 1, 2)) -> dict[str, list[dict]]:
    """The records a campaign's rule reads: every arm's first seeds (seed = fold) on ``folds``, and second
    seeds (fold + :data:`SECOND_SEED`) only of the arms :func:`second_seed_arms` names among the arms with
    every first seed in. ``read(arm, fold, seed)`` returns a record or None.

    A run of the same config made for another purpose (the ladder's final rung trains its recipe with a
    second seed on every fold, and that recipe can be a campaign arm) is not a campaign run, so it cannot
    enter decisions already taken."""
    runs = {arm: [r for fold in folds if (r := read(arm, fold, fold)) is not None] for arm in arms}
    complete = {arm: rs for arm, rs in runs.items() if {r["fold"] for r in rs} >= set(folds)}
    for arm in second_seed_arms(complete):
        runs[arm] += [r for fold in folds if (r := read(arm, fold, fold + SECOND_SEED)) is not None]
    return runs


def seed_spreads(arms: dict[str, Sequence[dict]]) -> list[float]:
    """Per fold of every arm run there with two seeds or more: the largest minus the smallest validation
    mIoU of its seeds."""
    return [v["spread"] for rs in arms.values() for v in seed_means(rs, "val", "miou").values() if v["seeds"] > 1]


def seed_spread(arms: dict[str, Sequence[dict]]) -> float:
    """What a campaign step must beat: the mean of :func:`seed_spreads` (NaN before any second seed)."""
    spreads = seed_spreads(arms)
    return float(np.mean(spreads)) if spreads else float("nan")


#: The decisions of :func:`campaign_verdicts` that a later run can still change.
PENDING_DECISIONS = frozenset({"waiting for runs", "waiting for second seeds", "not converged"})


def campaign_verdicts(arms: dict[str, Sequence[dict]], reference: str,
                      folds: Sequence[int] = (0, 1, 2), spread: float | None = None,
                      last_budget: bool = False) -> pd.DataFrame:
    """Chapter 6's rule for the campaign, on validation only: one row per arm other than ``reference``.

    Every arm changes one thing of the reference recipe and runs the reference's budget on ``folds``.
    Its gain on a fold is its validation mIoU minus the reference's, each averaged over the seeds it has
    there; it is *kept* when every run of both arms has :func:`converged` and its mean gain over the folds
    exceeds :func:`seed_spread`. The two best arms (:func:`second_seed_arms`) must have a second seed on
    every fold before anything is decided. The ``decision`` column is one of ``waiting for runs``,
    ``not converged``, ``waiting for second seeds``, ``kept`` and ``not kept``.

    ``spread``, when given, is a seed spread measured in another comparison (the doubled-budget follow-up
    of :func:`doubled_budget_arms` reads the campaign's own); these arms then need no second seeds.

    An arm is ``not converged`` as soon as one landed run of it or of the reference is still rising, before
    its other folds land: no later run can make every run converged. At the follow-up's last budget
    (``last_budget=True``, :data:`FOLLOW_UP_DOUBLINGS`) such an arm is ``not kept (still rising)``.
    """
    if spread is None:
        spread = seed_spread(arms)
        top = second_seed_arms(arms)
        seeded = all(seed_means(arms[a], "val", "miou").get(f, {}).get("seeds", 0) > 1
                     for a in top for f in folds)
    else:
        seeded = True
    ref = _fold_means(arms[reference])
    rows = {}
    for arm, runs in arms.items():
        if arm == reference:
            continue
        own = _fold_means(runs)
        complete = all(f in own and f in ref for f in folds)
        gains = {f"gain on fold {f}": own[f] - ref[f] if f in own and f in ref else float("nan") for f in folds}
        mean_gain = float(np.mean(list(gains.values()))) if complete else float("nan")
        if not all(converged(r) for r in (*runs, *arms[reference])):
            decision = "not kept (still rising)" if last_budget else "not converged"
        elif not complete:
            decision = "waiting for runs"
        elif not seeded:
            decision = "waiting for second seeds"
        else:
            decision = "kept" if mean_gain > spread else "not kept"
        rows[arm] = {**gains, "mean gain": mean_gain, "seed spread": spread, "decision": decision}
    columns = [f"gain on fold {f}" for f in folds] + ["mean gain", "seed spread", "decision"]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    table.index.name = "arm"
    return table


#: How many times the campaign's follow-up doubles the budget of an arm still rising (4000, then 8000, then
#: 16000 steps). Committed after d4-8000's fold-0 run ended still rising and before any other 8000-step or
#: 16000-step run of the follow-up landed; until then the rule said nothing of an arm still rising at 8000.
FOLLOW_UP_DOUBLINGS = 2


def doubled_budget_arms(verdicts: pd.DataFrame) -> list[str]:
    """The arms :func:`campaign_verdicts` could not judge because a run was still rising at the budget.

    Each is compared again, with the reference, at twice the budget on the same folds and first seeds
    (the calibration's doubling, :func:`budget_verdict`), judged by :func:`campaign_verdicts` against the
    doubled reference with the campaign's seed spread. An arm kept there brings its budget into the final
    recipe; one still rising there is doubled again, at most :data:`FOLLOW_UP_DOUBLINGS` times in all, and
    at the last doubling it is not kept (``campaign_verdicts(..., last_budget=True)``).
    """
    return [arm for arm, decision in verdicts["decision"].items() if decision == "not converged"]


def budget_step_verdict(calibrated: Sequence[dict], longer: Sequence[dict], steps: int, spread: float,
                        folds: Sequence[int] = (0, 1, 2)) -> pd.DataFrame:
    """The follow-up's last budget judged as a step of its own: the reference recipe at ``steps``
    (``longer``, first seeds on ``folds``) against the same recipe at the calibrated budget
    (``calibrated``), by :func:`campaign_verdicts` at the last budget with the campaign's ``spread``.

    One row, named ``"<steps> steps"``. Kept, the longer budget enters the ladder as a rung of its own,
    before any step judged at that budget; a run of either still rising means ``not kept (still rising)``.
    Added after d4's three 16000-step runs had landed and before any 16000-step reference run landed: until
    then a longer budget could enter the final recipe only through a kept arm (:func:`doubled_budget_arms`).

    Raises:
        ValueError: a run of ``longer`` trained for another number of steps.
    """
    other = sorted({r["config"]["train"]["steps"] for r in longer} - {steps})
    if other:
        raise ValueError(f"the longer runs should train for {steps} steps, not {other}")
    return campaign_verdicts({"calibrated": list(calibrated), f"{steps} steps": list(longer)}, "calibrated",
                             folds, spread=spread, last_budget=True)


def kept_steps(verdicts: pd.DataFrame, factors: dict[str, str]) -> list[str]:
    """The kept arms of :func:`campaign_verdicts`, at most one per factor (``factors``: arm -> what it
    changes, e.g. ``"decoder"``; the larger mean gain wins), largest mean gain first: the final recipe's
    steps in the order the ladder adds them."""
    best: dict[str, str] = {}
    for arm, row in verdicts[verdicts["decision"] == "kept"].iterrows():
        factor = factors[arm]
        if factor not in best or row["mean gain"] > verdicts.loc[best[factor], "mean gain"]:
            best[factor] = arm
    return sorted(best.values(), key=lambda a: -verdicts.loc[a, "mean gain"])
