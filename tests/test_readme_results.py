"""The README's headline numbers must be the ones the committed run records give."""
from pathlib import Path

import pytest

from defectlib import experiments, report

ROOT = Path(__file__).resolve().parents[1]
FOLDS = (0, 1, 2)


def _records(config: str) -> list[dict]:
    cfg = experiments.load_config(ROOT / config, profile="full")
    records = [experiments.read_record(cfg, fold, fold, ROOT / "results") for fold in FOLDS]
    if any(r is None for r in records):
        pytest.skip(f"{config}: not every record of folds {FOLDS} is committed")
    return records


def _readme() -> str:
    """The README's text with line breaks and runs of spaces folded to one space."""
    return " ".join((ROOT / "README.md").read_text().split())


def _pm(records: list[dict], key: str) -> str:
    mean, std = report.mean_std([r["test"][key] for r in records])
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


@pytest.mark.parametrize("config", ["configs/baseline.yaml", "configs/loss_winner.yaml"])
def test_readme_quotes_the_records(config):
    readme = _readme()
    records = _records(config)
    for key in ("miou", "defect_miou"):
        assert _pm(records, key) in readme, f"README does not quote {config}'s test {key} {_pm(records, key)}"


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
    family = experiments.load_family(ROOT / "configs/augmentation_ablation.yaml", profile="full")
    arms = {}
    for arm, cfg in family.items():
        records = [experiments.read_record(cfg, fold, fold, ROOT / "results") for fold in FOLDS]
        if any(r is None for r in records):
            pytest.skip(f"augmentation arm {arm}: not every record of folds {FOLDS} is committed")
        arms[arm] = records
    val = {arm: f"{100 * report.mean_std([r['val']['miou'] for r in rs])[0]:.1f}" for arm, rs in arms.items()}
    assert f"mean validation mIoU {val['flips']} %" in readme
    assert f"copy-paste + flips at {val['best']} %" in readme and f"d4, at {val['d4']} %" in readme
    assert f"({val['photometric']} and {val['copy_paste']} %)" in readme
    assert f"({_pm(arms['d4'], 'miou')} % against {_pm(arms['flips'], 'miou')} % for flips)" in readme
    _, winner = report.ranking_table(arms)
    assert winner == "flips", "the README says no pipeline beats flips"
