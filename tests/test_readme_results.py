"""The README's headline numbers must be the ones the committed run records give."""
from pathlib import Path

import pytest

from defectlib import config, experiments, report, selection, stats

ROOT = Path(__file__).resolve().parents[1]
FOLDS = (0, 1, 2)


def _records(config_file: str) -> list[dict]:
    cfg = config.load_config(ROOT / config_file, profile="full")
    records = [experiments.read_record(cfg, fold, fold, ROOT / "results") for fold in FOLDS]
    if any(r is None for r in records):
        pytest.skip(f"{config_file}: not every record of folds {FOLDS} is committed")
    return records


def _readme() -> str:
    """The README's text with line breaks and runs of spaces folded to one space."""
    return " ".join((ROOT / "README.md").read_text().split())


def _pm(records: list[dict], key: str) -> str:
    mean, std = stats.mean_std([r["test"][key] for r in records])
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


@pytest.mark.parametrize("config_file", ["configs/baseline.yaml", "configs/loss_winner.yaml"])
def test_readme_quotes_the_records(config_file):
    readme = _readme()
    records = _records(config_file)
    for key in ("miou", "defect_miou"):
        assert _pm(records, key) in readme, f"README does not quote {config_file}'s test {key} {_pm(records, key)}"


def test_readme_loss_paragraph_per_class_and_false_alarms():
    readme = _readme()
    arms = {"ce": _records("configs/baseline.yaml"), "win": _records("configs/loss_winner.yaml")}
    ious = report.class_iou_table(arms, "test") * 100
    for cls in ("Blowhole", "Crack"):
        assert f"{cls} goes from {ious.loc['ce', cls]:.1f} to {ious.loc['win', cls]:.1f} %" in readme \
            or f"{cls} from {ious.loc['ce', cls]:.1f} to {ious.loc['win', cls]:.1f} %" in readme, cls
    costs = report.cost_summary(arms, "test")["Free images with a false alarm (%)"]
    assert f"from {costs['ce']:.1f} to {costs['win']:.1f} %" in readme


def test_readme_augmentation_paragraph():
    """Chapter 5's paragraph: mean validation mIoU of the arms it names, and d4's and flips' test mIoU."""
    readme = _readme()
    family = config.load_family(ROOT / "configs/augmentation_ablation.yaml", profile="full")
    arms = {}
    for arm, cfg in family.items():
        records = [experiments.read_record(cfg, fold, fold, ROOT / "results") for fold in FOLDS]
        if any(r is None for r in records):
            pytest.skip(f"augmentation arm {arm}: not every record of folds {FOLDS} is committed")
        arms[arm] = records
    val = {arm: f"{100 * stats.mean_std([r['val']['miou'] for r in rs])[0]:.1f}" for arm, rs in arms.items()}
    assert f"mean validation mIoU {val['flips']} %" in readme
    assert f"copy-paste + flips at {val['best']} %" in readme and f"d4, at {val['d4']} %" in readme
    assert f"({val['photometric']} and {val['copy_paste']} %)" in readme
    assert f"({_pm(arms['d4'], 'miou')} % against {_pm(arms['flips'], 'miou')} % for flips)" in readme
    _, winner = selection.ranking_table(arms)
    assert winner == "flips", "the README says no pipeline beats flips"


ALL_FOLDS = (0, 1, 2, 3, 4)
RANDOM_FOLDS = ALL_FOLDS  # chapter 7 trains the random partition on all five folds too


def _records_of(config_file: str, folds: tuple[int, ...], partition: str | None = None) -> list[dict]:
    cfg = config.load_config(ROOT / config_file, profile="full")
    if partition:
        cfg = config.on_partition(cfg, partition)
    records = [experiments.read_record(cfg, fold, fold, ROOT / "results") for fold in folds]
    missing = [fold for fold, r in zip(folds, records) if r is None]
    assert not missing, f"the README quotes {config_file} ({partition or 'grouped'}), but folds {missing} have no record"
    return records


def _five(config_file: str) -> list[dict]:
    return _records_of(config_file, ALL_FOLDS)


def _oof(records: list[dict], key: str) -> str:
    return f"{100 * stats.pool_records(records, 'test')['test'][key]:.1f}"


def test_readme_final_paragraph():
    """Chapter 7's paragraph: out-of-fold results of the final recipe, the ladder's ends and the random partition."""
    readme = _readme()
    final, baseline = _five("configs/final.yaml"), _five("configs/baseline.yaml")
    loss = _five("configs/loss_winner.yaml")
    random = _records_of("configs/final.yaml", RANDOM_FOLDS, "random")
    grouped_same = [r for r in final if r["fold"] in RANDOM_FOLDS]
    pooled = stats.pool_records(final, "test")
    assert f"out-of-fold test mIoU of {_oof(final, 'miou')} %" in readme
    assert f"defect mIoU of {_oof(final, 'defect_miou')} %" in readme
    for cls in pooled["config"]["data"]["classes"][1:]:
        assert f"{cls} {100 * pooled['test']['iou'][cls]:.1f}" in readme, cls
    ladder = " → ".join(f"{_oof(rs, 'miou')} / {_oof(rs, 'defect_miou')}" for rs in (baseline, loss, final))
    assert ladder in readme, ladder
    inflation = (stats.pool_records(random, "test")["test"]["miou"]
                 - stats.pool_records(grouped_same, "test")["test"]["miou"])
    assert f"scores {_oof(random, 'miou')} % out of fold against {_oof(grouped_same, 'miou')} %" in readme
    assert f"adds {100 * inflation:.1f} points" in readme
    assert f"`results/{final[0]['checkpoint']['path']}`" in readme
    alarms = stats.false_alarms(pooled, "test")
    assert f"{100 * alarms['image_rate']:.1f} % of the {alarms['images']} images without a defect pixel" in readme
    intervals = stats.group_bootstrap(pooled, "test", ("miou", "defect_miou"), n_boot=1000)
    for key in ("miou", "defect_miou"):
        assert f"{100 * intervals[key][0]:.1f} to {100 * intervals[key][1]:.1f}" in readme, key


def test_readme_final_choice():
    """The README's account of chapter 7's choice: long wins a tie on validation mIoU."""
    readme = _readme()
    family = config.load_family(ROOT / "configs/final_candidates.yaml", profile="full")
    candidates = {arm: [experiments.read_record(cfg, f, f, ROOT / "results") for f in FOLDS] for arm, cfg in family.items()}
    if any(r is None for rs in candidates.values() for r in rs):
        pytest.skip("not every candidate record is committed")
    table, winner = selection.ranking_table(candidates)
    assert winner == "long"
    shown = {f"{v:.1f}" for v in table["mean validation mIoU (%)"]}
    assert len(shown) == 1 and f"validation mIoU, {shown.pop()} % each" in readme


def _final_rung() -> tuple[str, dict]:
    """The ladder's last rung, the final recipe (chapter 6 appends each kept step): its name and config."""
    ladder = config.load_family(ROOT / "configs/ladder.yaml", profile="full")
    rung = list(ladder)[-1]
    return rung, ladder[rung]


def test_readme_final_v2_paragraph():
    """The confirmatory stage's paragraph: the ladder's last rung out of fold, and the campaign's seed spread."""
    readme = _readme()
    rung, cfg = _final_rung()
    final = [experiments.read_record(cfg, fold, fold, ROOT / "results") for fold in ALL_FOLDS]
    assert all(r is not None for r in final), f"the README quotes the final rung {rung}, but a fold has no record"
    assert f"the ladder's `{rung}` rung" in readme
    pooled = stats.pool_records(final, "test")
    assert f"out-of-fold test mIoU of {_oof(final, 'miou')} %" in readme
    assert f"defect mIoU of {_oof(final, 'defect_miou')} %" in readme
    intervals = stats.group_bootstrap(pooled, "test", ("miou", "defect_miou"), n_boot=1000)
    for key in ("miou", "defect_miou"):
        assert f"{100 * intervals[key][0]:.1f} to {100 * intervals[key][1]:.1f}" in readme, key
    classes = pooled["config"]["data"]["classes"][1:]
    assert ", ".join(f"{c} {100 * pooled['test']['iou'][c]:.1f}" for c in classes) + " %" in readme
    assert f"image AUROC {100 * pooled['test']['image_auroc']:.1f} %" in readme
    alarms = stats.false_alarms(pooled, "test")
    assert f"{100 * alarms['image_rate']:.1f} % of the {alarms['images']} images without a defect pixel" in readme
    runs = _campaign_runs()
    spreads = selection.seed_spreads(runs)
    assert f"up to {100 * max(spreads):.1f} points of validation mIoU ({100 * selection.seed_spread(runs):.1f} on average)" in readme


def _campaign_runs() -> dict[str, list[dict]]:
    campaign = config.load_family(ROOT / "configs/campaign.yaml", profile="full")
    return selection.campaign_records(lambda arm, fold, seed: experiments.read_record(campaign[arm], fold, seed,
                                                                                       ROOT / "results"),
                                      list(campaign), FOLDS)


def test_readme_16000_step_decisions():
    """The README's account of the follow-up's last budget: d4 against the reference at 16000 steps, and the
    16000-step budget against 4000, with the gains and decisions chapter 6's rule gives."""
    readme = _readme()
    longer = config.load_family(ROOT / "configs/campaign_16000.yaml", profile="full")
    runs = {arm: [experiments.read_record(cfg, f, f, ROOT / "results") for f in FOLDS] for arm, cfg in longer.items()}
    if any(r is None for rs in runs.values() for r in rs):
        pytest.skip("not every 16000-step record is committed")
    spread = selection.seed_spread(_campaign_runs())
    d4 = selection.campaign_verdicts(runs, "reference-16000", FOLDS, spread=spread, last_budget=True).loc["d4-16000"]
    gains = ", ".join(f"{100 * d4[f'gain on fold {f}']:+.1f}" for f in FOLDS[:-1])
    assert f"gained {gains} and {100 * d4[f'gain on fold {FOLDS[-1]}']:+.1f} points on folds 0-2" in readme
    assert f"a mean gain of {100 * d4['mean gain']:.1f} points, under the spread, so it is not kept" in readme
    assert d4["decision"] == "not kept"
    budget = selection.budget_step_verdict(_records_of("configs/native_c192.yaml", FOLDS), runs["reference-16000"],
                                           16000, spread, FOLDS).iloc[0]
    assert budget["decision"] == "not kept"
    assert f"judged against 4000 steps (a mean gain of {100 * budget['mean gain']:.1f} points)" in readme


def test_readme_final_second_seed_and_release():
    """The final rung's second seed: its out-of-fold test mIoU, the seed differences per fold on validation, and
    its fold-0 run as the released checkpoint with that run's own test score (chapter 7)."""
    readme = _readme()
    cfg = _final_rung()[1]
    first = [experiments.read_record(cfg, f, f, ROOT / "results") for f in ALL_FOLDS]
    second = [experiments.read_record(cfg, f, f + selection.SECOND_SEED, ROOT / "results") for f in ALL_FOLDS]
    if any(r is None for r in second):
        pytest.skip("the final rung's second seed has not landed on every fold")
    pooled = stats.pool_records(second, "test")
    low, high = stats.group_bootstrap(pooled, "test", ("miou",), n_boot=1000)["miou"]
    assert (f"second seed (seed = fold + {selection.SECOND_SEED}) reaches an out-of-fold test mIoU of "
            f"{_oof(second, 'miou')} % ({100 * low:.1f} to {100 * high:.1f})") in readme
    diffs = [v["spread"] for v in stats.seed_means([*first, *second], "val", "miou").values()]
    assert (f"validation mIoU differ by {100 * min(diffs):.1f} to {100 * max(diffs):.1f} points "
            f"({100 * sum(diffs) / len(diffs):.1f} on average)") in readme
    release = second[0]
    assert f"`results/{release['checkpoint']['path']}`" in readme
    assert (f"on its own test fold it scores {100 * release['test']['miou']:.1f} % mIoU and "
            f"{100 * release['test']['defect_miou']:.1f} % defect mIoU") in readme


def test_readme_final_random_bridge():
    """The final rung on the random image-level partition against the corrected grouped folds (chapter 7's
    bridge), both seed = fold, out of fold."""
    readme = _readme()
    cfg = _final_rung()[1]
    random = [experiments.read_record(config.on_partition(cfg, "random"), f, f, ROOT / "results") for f in ALL_FOLDS]
    if any(r is None for r in random):
        pytest.skip("the final rung's random-partition bridge has not landed on every fold")
    grouped = [experiments.read_record(cfg, f, f, ROOT / "results") for f in ALL_FOLDS]
    pooled = stats.pool_records(random, "test")
    low, high = stats.group_bootstrap(pooled, "test", ("miou",), n_boot=1000)["miou"]
    inflation = pooled["test"]["miou"] - stats.pool_records(grouped, "test")["test"]["miou"]
    assert (f"the final recipe scores {_oof(random, 'miou')} % out of fold ({100 * low:.1f} to {100 * high:.1f}) "
            f"against {_oof(grouped, 'miou')} % on the corrected grouped folds: the random split adds "
            f"{100 * inflation:.1f} points") in readme
    rising = len(selection.still_rising(random))
    assert f"{rising} of the {len(random)} random-partition runs were still rising" in readme


def test_readme_confirmatory_ladder():
    """Chapter 6's ladder at the converged budget: every rung's out-of-fold test mIoU / defect mIoU on the five
    corrected folds (seed = fold), in the ladder's order, with the rungs' names, and its two steps (focal + Dice,
    native crops) with their paired region-bootstrap intervals and the folds each is ahead on."""
    readme = _readme()
    ladder = config.load_family(ROOT / "configs/ladder.yaml", profile="full")
    runs = {rung: [experiments.read_record(cfg, f, f, ROOT / "results") for f in ALL_FOLDS] for rung, cfg in ladder.items()}
    if any(r is None for rs in runs.values() for r in rs):
        pytest.skip("not every rung of the ladder has landed on all five folds")
    assert " → ".join(f"`{rung}`" for rung in runs) in readme
    assert " → ".join(f"{_oof(rs, 'miou')} / {_oof(rs, 'defect_miou')}" for rs in runs.values()) in readme
    steps = report.ladder_step_intervals(runs, keys=("miou",))
    loss, crops = (steps.loc[f"{after} minus {before}"] for before, after in (("square-ce", "square"), ("square", "reference")))
    assert (f"{100 * loss['miou']:+.1f} points of mIoU (95 % paired region-bootstrap interval "
            f"{100 * loss['miou low']:+.1f} to {100 * loss['miou high']:+.1f}), ahead on {loss['miou folds ahead']} folds") in readme
    assert (f"add {100 * crops['miou']:+.1f} ({100 * crops['miou low']:+.1f} to {100 * crops['miou high']:+.1f}), "
            f"ahead on {crops['miou folds ahead']} folds") in readme
