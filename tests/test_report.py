import numpy as np
import pytest

from defectlib import qualitative, report, selection, stats, tables


def _record(fold, val_miou, val_dmiou, test_miou=0.3, per_image=None):
    names = ("background", "A")
    metrics = {"miou": test_miou, "defect_miou": 0.1, "iou": dict(zip(names, (0.9, 0.1)))}
    return {"fold": fold, "config": {"data": {"classes": list(names)}},
            "val": {"miou": val_miou, "defect_miou": val_dmiou}, "test": metrics,
            "per_image": {"test": per_image} if per_image else {}}


def test_select_arm_breaks_near_ties_on_defect_miou():
    arms = {"a": [_record(0, 0.400, 0.10), _record(1, 0.400, 0.10)],
            "b": [_record(0, 0.397, 0.30), _record(1, 0.397, 0.30)],   # 0.3 points behind, far better on defects
            "c": [_record(0, 0.380, 0.50), _record(1, 0.380, 0.50)]}   # 2 points behind: out
    assert selection.select_arm(arms) == "b"
    assert selection.select_arm({k: v for k, v in arms.items() if k != "b"}) == "a"


def test_paired_differences_match_folds():
    a = [_record(0, 0.4, 0.1, test_miou=0.30), _record(1, 0.4, 0.1, test_miou=0.20)]
    b = [_record(1, 0.4, 0.1, test_miou=0.25), _record(0, 0.4, 0.1, test_miou=0.40)]
    table = report.paired_differences(a, b, keys=("miou",))
    assert table.loc["mIoU (6 classes)", "fold 0"] == "+10.0"
    assert table.loc["mIoU (6 classes)", "fold 1"] == "+5.0"
    assert table.loc["mIoU (6 classes)", "mean ± std"] == "+7.5 ± 3.5"


def test_false_alarms_count_defect_free_images_only():
    # 2x2 confusion matrices flattened: [bg->bg, bg->A, A->bg, A->A]
    per_image = {"names": ["free1", "free2", "defect"], "scores": [0, 0, 0],
                 "confusion": [[900, 100, 0, 0], [1000, 0, 0, 0], [500, 300, 100, 100]]}
    fa = stats.false_alarms(_record(0, 0, 0, per_image=per_image), min_pixels=64)
    assert fa == {"image_rate": 0.5, "pixel_rate": pytest.approx(100 / 2000), "images": 2}


def test_fold_table_formats_percent_and_spread():
    records = [_record(0, 0.4, 0.1, test_miou=0.30), _record(1, 0.4, 0.1, test_miou=0.20)]
    table = report.fold_table(records, "test", keys=("miou", "IoU A"))
    assert list(table.columns) == ["fold 0", "fold 1", "mean ± std"]
    assert table.loc["mIoU (6 classes)"].tolist() == ["30.0", "20.0", "25.0 ± 7.1"]
    assert table.loc["IoU A"].tolist() == ["10.0", "10.0", "10.0 ± 0.0"]
    assert report.pct(float("nan")) == "-" and np.isnan(stats.mean_std([])[0])


def _scored(fold, names, confusions, split_file, **extra):
    """A run record with a per-image test table over classes (background, A)."""
    cms = np.asarray(confusions).reshape(-1, 2, 2)
    total = cms.sum(0)
    iou_a = total[1, 1] / (total[1].sum() + total[:, 1].sum() - total[1, 1])
    iou_bg = total[0, 0] / (total[0].sum() + total[:, 0].sum() - total[0, 0])
    test = {"miou": (iou_a + iou_bg) / 2, "defect_miou": iou_a, "iou": {"background": iou_bg, "A": iou_a},
            "image_auroc": 0.5}
    record = {"run_id": f"run{fold}", "fold": fold, "config": {"data": {"classes": ["background", "A"]}},
              "split_file": str(split_file), "val": {"miou": 0.5, "defect_miou": 0.2}, "test": test,
              "per_image": {"test": {"names": list(names), "scores": [0] * len(names),
                                     "confusion": [list(map(int, c)) for c in confusions]}},
              "wall_seconds": 600, "train_images_per_second": 10.0, "best_epoch": 20}
    record.update(extra)
    return record


def test_paired_intervals_align_images_by_name_and_bracket_the_difference(tmp_path):
    import json
    split_file = tmp_path / "split.json"
    names = [f"img{k}" for k in range(12)]
    split_file.write_text(json.dumps({"folds": {"0": names}, "groups": {n: f"g{k // 2}" for k, n in enumerate(names)}}))
    rng = np.random.default_rng(0)
    ref_cms, arm_cms = [], []
    for k in range(12):
        tp = int(rng.integers(0, 10))
        ref_cms.append([300, 2, 20 - tp, tp])
        arm_cms.append([300, 2, 16 - tp, tp + 4])      # the arm finds 4 more pixels on every image
    ref = _scored(0, names, ref_cms, split_file)
    order = list(reversed(range(12)))                  # the arm's table lists the images in another order
    arm = _scored(0, [names[k] for k in order], [arm_cms[k] for k in order], split_file)
    table = report.paired_intervals([ref], {"better": [arm]}, keys=("defect_miou",), n_boot=200)
    row = table.iloc[0]
    assert row["difference"] == pytest.approx(arm["test"]["defect_miou"] - ref["test"]["defect_miou"])
    assert 0 < row["low"] <= row["difference"] <= row["high"]
    text = report.paired_interval_table(table)
    assert text.loc[("better", "defect mIoU (5 classes)"), "folds above 0"] == "1 of 1"
    other = _scored(0, names[:-1], ref_cms[:-1], split_file)
    with pytest.raises(ValueError, match="same test images"):
        report.paired_intervals([ref], {"fewer": [other]}, n_boot=10)


def test_ladder_step_intervals_pool_both_rungs_and_pair_their_images(tmp_path):
    import json
    split_file = tmp_path / "split.json"
    names = {0: [f"a{k}" for k in range(6)], 1: [f"b{k}" for k in range(6)]}
    groups = {n: f"g{k // 2}{n[0]}" for ns in names.values() for k, n in enumerate(ns)}
    split_file.write_text(json.dumps({"folds": {str(f): ns for f, ns in names.items()}, "groups": groups}))

    def rung(extra):   # each image: 20 defect pixels, of which 5 + extra are found
        return [_scored(f, ns, [[300, 0, 15 - extra, 5 + extra]] * len(ns), split_file) for f, ns in names.items()]
    steps = {"base": rung(0), "better": rung(4), "same": rung(4)}
    table = report.ladder_step_intervals(steps, keys=("defect_miou",), n_boot=100)
    assert list(table.index) == ["better minus base", "same minus better"]
    up = table.loc["better minus base"]
    pooled = {k: stats.pool_records(v)["test"]["defect_miou"] for k, v in steps.items()}
    assert up["defect_miou"] == pytest.approx(pooled["better"] - pooled["base"]) and up["defect_miou"] > 0
    assert 0 < up["defect_miou low"] <= up["defect_miou"] <= up["defect_miou high"]
    assert up["defect_miou folds ahead"] == "2 of 2"
    flat = table.loc["same minus better"]
    assert flat["defect_miou"] == 0 and flat["defect_miou low"] == flat["defect_miou high"] == 0
    assert flat["defect_miou folds ahead"] == "0 of 2"
    text = report.ladder_step_table(table, keys=(("defect_miou", "defect mIoU"),))
    assert text.loc["same minus better"].tolist() == ["+0.0 [+0.0, +0.0]", "0 of 2"]
    with pytest.raises(ValueError, match="same folds"):
        report.ladder_step_intervals({"base": rung(0), "short": rung(4)[:1]})


def test_arm_table_and_cost_summary_show_every_fold(tmp_path):
    arms = {"x": [_record(1, 0.5, 0.2, test_miou=0.4), _record(0, 0.3, 0.1, test_miou=0.2)],
            "y": [_record(1, 0.6, 0.2, test_miou=0.1), _record(0, 0.4, 0.1, test_miou=0.1)]}
    table = report.arm_table(arms, keys=(("val", "miou"), ("test", "miou")))
    assert table.loc["x", ("val mIoU (6 classes)", "fold 0")] == "30.0"           # one column per fold
    assert table.loc["x", ("val mIoU (6 classes)", "fold 1")] == "50.0"
    assert table.loc["x", ("test mIoU (6 classes)", "mean ± std")] == "30.0 ± 14.1"
    assert table.attrs["best"] == {("val mIoU (6 classes)", "mean ± std"): "max"}   # validation decides
    html = tables.to_html(table)
    assert '>50.0 ± 14.1</td>' in html and "best" in html.split(">50.0 ± 14.1<")[0].rsplit("<td", 1)[1]
    split_file = tmp_path / "split.json"
    split_file.write_text('{"folds": {"0": []}}')
    free = [[90, 10, 0, 0], [100, 0, 0, 0]]
    runs = [_scored(0, ["a", "b"], free, split_file, wall_seconds=600),
            _scored(1, ["a", "b"], free, split_file, wall_seconds=900)]
    costs = report.cost_summary({"x": runs}, min_pixels=5)
    assert costs.loc["x", "Free images with a false alarm (%)"] == pytest.approx(50)
    assert costs.loc["x", "Free pixels predicted defect (%)"] == pytest.approx(5)
    assert costs.loc["x", "wall minutes per run"] == pytest.approx(12.5)


def test_images_at_rank_picks_worst_median_and_best_of_each_class(tmp_path):
    # class A on four images with IoU 0, 1/4, 1/2, 1; one image without A
    confusions = [[10, 0, 4, 0], [10, 3, 0, 1], [10, 0, 1, 1], [10, 0, 0, 2], [10, 0, 0, 0]]
    record = _scored(0, ["i0", "i1", "i2", "i3", "free"], confusions, tmp_path / "s.json")
    assert stats.images_at_rank(record, "test", 0.0) == [("A", "i0", 0.0)]
    assert stats.images_at_rank(record, "test", 0.5) == [("A", "i2", 0.5)]
    assert stats.images_at_rank(record, "test", 1.0) == [("A", "i3", 1.0)]


def test_combine_steps_keeps_components_whose_step_raised_validation_miou():
    arms = {"flips": [_record(0, 0.40, 0.1)], "d4": [_record(0, 0.42, 0.1)],
            "affine": [_record(0, 0.41, 0.1)], "photometric": [_record(0, 0.43, 0.1)]}
    steps = [("d4", "d4-flips"), ("affine", "affine"), ("photometric", "photometric")]
    # d4 beats flips (kept, replacing flips); affine falls (dropped); photometric beats affine (kept)
    assert selection.combine_steps(arms, ("flips", "flips"), steps) == "d4+photometric"
    arms["d4"] = [_record(0, 0.39, 0.1)]   # now d4 falls; affine rises over d4, photometric over affine
    assert selection.combine_steps(arms, ("flips", "flips"), steps) == "flips+affine+photometric"
    assert selection.combine_steps({"a": [_record(0, 0.5, 0)], "b": [_record(0, 0.4, 0)]},
                                ("a", "none"), [("b", "flips")]) == "none"


def _table(names, scores, defect):
    # 2 classes; an image with a defect has 10 true defect pixels, all found
    return {"names": names, "scores": scores,
            "confusion": [[90, 0, 0, 10] if d else [100, 0, 0, 0] for d in defect]}


def test_per_class_table_puts_validation_beside_test():
    records = []
    for fold, (val_name, test_name) in enumerate((("v0", "t0"), ("v1", "t1"))):
        r = _record(fold, 0.4, 0.1, per_image=_table([test_name], [0.9], [True]))
        r["per_image"]["val"] = {"names": [val_name], "scores": [0.9], "confusion": [[90, 0, 10, 0]]}  # all missed
        r["split_file"] = "data/splits/magnetic_tile.json"
        records.append(r)
    table = report.per_class_table(records, n_boot=20)
    assert list(table.index) == ["background", "A", "mIoU (6 classes)", "defect mIoU (5 classes)"]
    assert table.loc["A", "validation IoU"] == "0.0" and table.loc["A", "test IoU"] == "100.0"
    assert table.loc["A", "test Dice"] == "100.0" and table.loc["A", "test IoU interval"] == "[100.0, 100.0]"
    assert table.index.name == "out of fold, 2 images"


def test_pool_records_joins_folds_and_refuses_an_image_twice():
    a = _record(0, 0.4, 0.1, per_image=_table(["x", "y"], [0.9, 0.1], [True, False]))
    b = _record(1, 0.4, 0.1, per_image=_table(["z"], [0.8], [True]))
    for r in (a, b):
        r["split_file"] = "data/splits/magnetic_tile.json"
    pooled = stats.pool_records([a, b])
    assert pooled["per_image"]["test"]["names"] == ["x", "y", "z"] and pooled["folds"] == [0, 1]
    assert pooled["test"]["images"] == 3 and pooled["test"]["iou"]["A"] == 1.0
    assert pooled["test"]["image_accuracy"] == 1.0
    with pytest.raises(ValueError, match="more than one record"):
        stats.pool_records([a, a])
    b["split_file"] = "other.json"
    with pytest.raises(ValueError, match="different partitions"):
        stats.pool_records([a, b])


def test_accuracy_threshold_is_chosen_between_the_classes():
    table = _table(list("abcd"), [0.2, 0.3, 0.35, 0.9], [False, False, True, True])
    t = selection.accuracy_threshold(table)
    assert 0.3 < t <= 0.35
    assert stats.table_metrics(table, ("background", "A"), threshold=t)["image_accuracy"] == 1.0
    assert stats.table_metrics(table, ("background", "A"))["image_accuracy"] == 0.75   # 0.5 misses "c"


def test_ablation_prose_helpers():
    def rec(run, val, test_iou_a, speed):
        r = _record(0, val, 0.1)
        r["val"]["iou"] = {"background": 0.9, "A": val}
        r["test"]["iou"] = {"background": 0.9, "A": test_iou_a}
        r.update(run_id=run, train_images_per_second=speed)
        return r
    arms = {"ref": [rec("r0", 0.30, 0.10, 10.0)], "new": [rec("n0", 0.40, 0.20, 10.5)],
            "slow": [rec("s0", 0.20, 0.05, 4.0)]}
    table, winner = selection.ranking_table(arms)
    assert winner == "new" and list(table.index) == ["new", "ref", "slow"] and table.loc["new", "selected"] == "winner"
    assert "`s0`" in report.throughput_note(arms, "the loss") and "1 run(s)" in report.throughput_note(arms, "the loss")
    assert "No run" in report.throughput_note({k: v for k, v in arms.items() if k != "slow"}, "the loss")
    assert report.class_lines(arms, "ref", "new") == (
        "- **A**: test IoU 10.0 % with ref, 20.0 % with new; the arm best for it on validation is new (test 20.0 %).")
    assert report.class_lines(arms, "ref", "ref") == (
        "- **A**: test IoU 10.0 % with ref; the arm best for it on validation is new (test 20.0 %).")
    values = report.summary_values(arms["new"] * 2)
    assert values["val_miou"] == pytest.approx(40.0) and values["test_miou_std"] == 0.0


def _kinds_record(confusions, names):
    # 3 classes: background, A, B; flattened 3x3 confusions, rows truth
    return {"config": {"data": {"classes": ["background", "A", "B"]}},
            "per_image": {"test": {"names": names, "scores": [0.0] * len(names), "confusion": confusions}}}


def test_failure_kinds_name_each_outcome():
    confusions = [
        [100, 0, 0, 2, 18, 0, 0, 0, 0],    # A: 18 of 20 found -> found
        [100, 0, 0, 5, 3, 12, 0, 0, 0],    # A: mostly predicted B -> wrong class
        [100, 0, 0, 15, 3, 2, 0, 0, 0],    # A: mostly background -> missed
        [100, 10, 0, 6, 9, 0, 0, 0, 0],    # A: 9 of 15 found but 10 false pixels, IoU 0.36 -> partly found
        [900, 70, 0, 0, 0, 0, 0, 0, 0],    # Free, 70 pixels predicted A -> false alarm
        [960, 10, 0, 0, 0, 0, 0, 0, 0],    # Free, 10 pixels -> clean
    ]
    kinds = qualitative.failure_kinds(_kinds_record(confusions, list("uvwxyz")))
    assert kinds["kind"].tolist() == ["found", "wrong class", "missed", "partly found", "false alarm", "clean"]
    assert kinds["predicted"].tolist()[:2] == ["A", "B"] and kinds["truth"].tolist()[-1] == "Free"
    table = qualitative.failure_table(kinds)
    assert table.loc["A", "images"] == 4 and table.loc["Free", "false alarm"] == 1


def test_top_confusion_names_the_images_it_returns():
    import pandas as pd
    kinds = pd.DataFrame([
        {"name": "a1", "truth": "Blowhole", "kind": "wrong class", "iou": 0.0, "predicted": "Crack"},
        {"name": "b1", "truth": "Break", "kind": "wrong class", "iou": 0.2, "predicted": "Fray"},
        {"name": "b2", "truth": "Break", "kind": "wrong class", "iou": 0.1, "predicted": "Fray"},
        {"name": "b3", "truth": "Break", "kind": "found", "iou": 0.9, "predicted": "Break"},
    ])
    caption, n, names = qualitative.top_confusion(kinds)
    assert caption == "Break called Fray, 2 images" and n == 2
    assert names == ["b2", "b1"]                   # every image drawn is of the confusion the caption names
    assert qualitative.top_confusion(kinds[kinds["kind"] == "found"]) == ("none", 0, [])


def test_disagreements_rank_both_directions():
    good = [100, 0, 0, 0, 20, 0, 0, 0, 0]
    bad = [100, 0, 0, 20, 0, 0, 0, 0, 0]
    a = _kinds_record([good, bad, good], ["p", "q", "r"])
    b = _kinds_record([bad, good, good], ["p", "q", "r"])
    top = qualitative.disagreements(a, b, top=1)
    assert top["name"].tolist() == ["q", "p"] and top["difference"].tolist() == [1.0, -1.0]
    with pytest.raises(ValueError, match="same images"):
        qualitative.disagreements(a, _kinds_record([good], ["p"]))


def test_ladder_table_pools_each_recipe_and_checks_folds():
    def recs(found):   # two folds, one defect image each: IoU 1 where found else 0
        out = []
        for fold, name in ((0, "p"), (1, "q")):
            r = _record(fold, 0.4, 0.1, per_image=_table([name], [0.9], [True]))
            if not found[fold]:
                r["per_image"]["test"]["confusion"] = [[90, 0, 10, 0]]
            r["split_file"] = "data/splits/magnetic_tile.json"
            r["test"]["miou"] = 0.95 if found[fold] else 0.45
            out.append(r)
        return out
    ladder = report.ladder_table({"base": recs((True, False)), "better": recs((True, True))},
                                 keys=("defect_miou",), n_boot=50)
    assert list(ladder.index) == ["base", "better"] and ladder.loc["better", "defect_miou"] == 1.0
    assert ladder.loc["base", "defect_miou"] == 0.5 and ladder.loc["base", "folds"] == "0 1"
    assert ladder.loc["base", "defect_miou low"] <= 0.5 <= ladder.loc["base", "defect_miou high"]
    with pytest.raises(ValueError, match="different folds"):
        report.ladder_table({"a": recs((True, True)), "b": recs((True, True))[:1]})
    steps = {"base": recs((True, False)), "better": recs((True, True))}
    summary = report.ladder_summary(report.ladder_table(steps, n_boot=50), steps)
    assert list(summary.index) == ["base", "better"] and summary.loc["base", "IoU A"] == "50.0"
    assert summary.loc["better", "defect mIoU"] == "100.0" and summary.loc["base", "mIoU per fold"] == "70.0 ± 35.4"


def test_thin_structure_sees_a_thicker_and_broken_prediction():
    truth = np.zeros((40, 100), np.uint8)
    truth[19:22, 10:90] = 3                       # a crack 3 px wide, one piece
    pred = np.zeros_like(truth)
    pred[17:23, 10:45] = 3                        # 6 px wide, broken in two
    pred[17:23, 55:90] = 3
    row = qualitative.thin_structure(truth, pred, 3)
    assert row["true pieces"] == 1 and row["predicted pieces"] == 2
    assert row["true width (px)"] == pytest.approx(3, rel=0.15)
    assert row["width ratio"] == pytest.approx(2, rel=0.2)
    assert np.isnan(qualitative.thin_structure(truth, np.zeros_like(truth), 3)["width ratio"])


def test_arm_convergence_flags_arms_still_rising():
    def run(curve):
        return {"history": [{"val_miou": v} for v in curve], "best_epoch": int(np.argmax(curve)) + 1}

    rising = [run([0.1 * i for i in range(1, 11)]), run([0.05 * i for i in range(1, 11)])]
    flat = [run([0.1, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6])]
    table = report.arm_convergence({"rising": rising, "flat": flat}, window=5)
    assert table.loc["rising", "runs best in the last window"] == 2
    assert table.loc["flat", "runs best in the last window"] == 0
    assert table.loc["rising", "mean best epoch"] == 10
    assert table.loc["rising", "change over last 5 epochs (points)"] == pytest.approx((40 + 20) / 2)
    assert table.loc["flat", "change over last 5 epochs (points)"] == pytest.approx(0)


def test_seeds_pool_per_fold_with_their_spread():
    def rec(fold, seed, miou):
        return {"fold": fold, "seed": seed, "val": {"miou": miou, "defect_miou": miou / 2}}

    runs = [rec(0, 0, 0.40), rec(0, 1, 0.44), rec(1, 1, 0.50), rec(1, 2, 0.50)]
    pooled = stats.seed_means(runs, "val", "miou")
    assert pooled[0] == {"mean": pytest.approx(0.42), "spread": pytest.approx(0.04), "seeds": 2}
    assert pooled[1]["spread"] == 0 and pooled[1]["seeds"] == 2
    table = report.seed_table(runs, "val", ("miou",))
    assert table.loc["mIoU (6 classes)", "fold 0 (2 seeds)"] == "42.0 (spread 4.0)"
    assert table.loc["mIoU (6 classes)", "largest seed spread"] == "4.0"
    assert table.loc["mIoU (6 classes)", "mean ± std over folds"] == "46.0 ± 5.7"


def test_target_table_says_met_missed_and_not_yet():
    table = report.target_table({"mIoU": (0.43, 0.37, 0.48), "AUROC": (0.96, 0.94, 0.97), "Break": None,
                                 "random": (0.79, float("nan"), float("nan"))},
                                {"mIoU": 0.50, "AUROC": 0.95, "Break": 0.15, "random": 0.78})
    assert table.loc["mIoU", "met"] == "no (interval clear of it)"
    assert table.loc["mIoU", "reached (%)"] == "43.0" and table.loc["mIoU", "95 % interval"] == "[37.0, 48.0]"
    assert table.loc["AUROC", "met"] == "yes"   # the interval straddles the target
    assert table.loc["Break", "met"] == "not yet" and table.loc["Break", "reached (%)"] == "not yet measured"
    assert table.loc["random", "met"] == "yes" and table.loc["random", "95 % interval"] == ""
