import numpy as np

from defectlib import overlays, viz


def test_error_map_colours_found_false_and_missed_pixels():
    truth = np.array([[0, 1, 1, 2]])
    pred = np.array([[1, 1, 0, 1]])
    rgb = overlays.error_map(truth, pred)
    assert tuple(rgb[0, 0]) == overlays.ERROR_COLORS["false"]      # false alarm on background
    assert tuple(rgb[0, 1]) == overlays.ERROR_COLORS["found"]
    assert tuple(rgb[0, 2]) == overlays.ERROR_COLORS["missed"]
    assert tuple(rgb[0, 3]) == overlays.ERROR_COLORS["false"]      # wrong defect class
    assert tuple(overlays.error_map(np.zeros((1, 1), int), np.zeros((1, 1), int))[0, 0]) == (255, 255, 255)


def test_overlay_keeps_background_and_colours_classes():
    image = np.full((4, 4), 100, np.uint8)
    mask = np.zeros((4, 4), np.uint8)
    mask[1:3, 1:3] = 3
    rgb = overlays.overlay(image, mask, alpha=1.0)
    assert tuple(rgb[0, 0]) == (100, 100, 100)
    assert tuple(rgb[1, 1]) == overlays.CLASS_COLORS["Crack"]


def test_ablation_plots_draw_every_arm_and_run():
    import matplotlib
    matplotlib.use("Agg")
    import pandas as pd

    intervals = pd.DataFrame([{"arm": a, "fold": f, "metric": m, "difference": 0.01, "low": -0.01, "high": 0.03}
                              for a in ("x", "y") for f in (0, 1, 2) for m in ("miou", "defect_miou")])
    fig = viz.plot_paired_intervals(intervals, "ce")
    assert [len(ax.containers) for ax in fig.axes] == [6, 6]             # 2 arms x 3 runs with error bars
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["y", "x"]
    history = [{"epoch": e, "val_miou": 0.1 * e, "val_defect_miou": 0.0, "val_binary_defect_iou": 0.0}
               for e in (1, 2, 3)]
    fig = viz.plot_arm_curves({"x": [{"history": history}] * 2, "y": [{"history": history[:2]}]}, highlight=("x",))
    assert [len(ax.lines) for ax in fig.axes] == [2, 2, 2]
    assert fig.axes[0].lines[0].get_linewidth() > fig.axes[0].lines[1].get_linewidth()
    ax = viz.plot_class_heatmap(pd.DataFrame({"A": [10.0, 20.0]}, index=["x", "y"]), highlight="y")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y (winner)"]


def test_plot_ladder_draws_one_panel_per_metric():
    import pandas as pd

    ladder = pd.DataFrame({"miou": [0.3, 0.4], "miou low": [0.25, 0.35], "miou high": [0.35, 0.45],
                           "defect_miou": [0.1, 0.2], "defect_miou low": [0.05, 0.1], "defect_miou high": [0.15, 0.3]},
                          index=["baseline", "final"])
    fig = viz.plot_ladder(ladder)
    assert len(fig.axes) == 2 and [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["baseline", "final"]


def test_plot_cases_titles_each_prediction_with_its_iou_and_zooms():
    from defectlib.viz import plot_cases

    image = np.full((40, 60), 120, np.uint8)
    truth = np.zeros((40, 60), np.uint8)
    truth[10:20, 10:20] = 3                       # 100 Crack pixels
    half = truth.copy()
    half[10:15] = 0                               # finds half of them: IoU 50 %
    free = np.zeros_like(truth)
    fig = plot_cases([
        {"title": "crack", "image": image, "truth": truth, "predictions": {"final": half, "baseline": free},
         "box": (5, 25, 5, 25)},
        {"title": "free", "image": image, "truth": free, "predictions": {"final": half}},
    ])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:5] == ["crack", "truth (zoomed)", "final: IoU 50 %", "baseline: IoU 0 %", "errors (zoomed)"]
    assert titles[5:8] == ["free", "truth (zoomed)", "final: 50 defect px"]     # zoomed on the false alarm
    assert fig.axes[0].images[0].get_array().shape == (40, 60)   # the whole image, the view marked on it
    assert fig.axes[1].images[0].get_array().shape[:2] == (20, 20)   # zoomed to the box


def test_error_map_colours_are_no_class_colour_and_are_told_apart():
    errors = set(overlays.ERROR_COLORS.values())
    assert len(errors) == 3
    assert not errors & set(overlays.CLASS_COLORS.values()) and not errors & set(overlays.FALLBACK_COLORS)


def test_zoom_box_frames_a_small_defect_and_leaves_a_large_one():
    truth = np.zeros((200, 300), np.uint8)
    truth[100:104, 50:54] = 1                                        # 16 px: 0.03 % of the image
    top, bottom, left, right = viz.zoom_box(truth)
    assert (bottom - top, right - left) == (64, 64) and top <= 100 and bottom >= 104 and left <= 50 and right >= 54
    truth[:, :100] = 5                                               # a third of the image
    assert viz.zoom_box(truth) is None
    free = np.zeros((200, 300), np.uint8)
    assert viz.zoom_box(free) is None
    alarm = free.copy()
    alarm[0:3, 290:300] = 2                                          # a false alarm on a defect-free image
    top, bottom, left, right = viz.zoom_box(free, alarm)
    assert top == 0 and right == 300 and bottom - top == 64


def test_case_and_strip_plots_zoom_small_defects_and_draw_one_error_legend():
    import matplotlib
    matplotlib.use("Agg")

    image = np.full((120, 160), 90, np.uint8)
    small, large = np.zeros((120, 160), np.uint8), np.zeros((120, 160), np.uint8)
    small[60:63, 80:83] = 1
    large[:, :80] = 5
    cases = [{"title": t, "image": image, "truth": m, "predictions": {"final": m}} for t, m in
             (("small", small), ("large", large))]
    fig = viz.plot_cases(cases)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[1] == "truth (zoomed)" and titles[5] == "truth"
    assert fig.axes[0].patches and not fig.axes[4].patches               # the view is marked on the small one only
    assert fig.axes[1].images[0].get_array().shape[:2] == (64, 64)
    assert len(fig.legends) == 1 and [t.get_text() for t in fig.legends[0].get_texts()] == list(
        overlays.ERROR_LABELS.values())
    strip = viz.plot_class_strip([{"title": "Blowhole", "image": image, "truth": small, "pred": small},
                                  {"title": "Uneven", "image": image, "truth": large, "pred": large}])
    assert [ax.get_title() for ax in strip.axes[:3]] == ["Blowhole", "Uneven", "truth (zoomed)"]


def test_plot_budget_curves_draws_each_first_seed_run_in_its_fold_with_its_best_ringed():
    import matplotlib
    matplotlib.use("Agg")

    def run(fold, seed, values, every):
        return {"fold": fold, "seed": seed,
                "history": [{"step": every * (i + 1), "val_miou": v} for i, v in enumerate(values)]}

    runs = {4000: {"reference": [run(0, 0, [0.3, 0.5, 0.4], 400), run(1, 1, [0.2, 0.3, 0.1], 400)],
                   "d4": [run(0, 5, [0.9, 0.9, 0.9], 400)]},          # a second seed: not drawn
            16000: {"reference": [run(0, 0, [0.1, 0.2, 0.6], 1600)]}}
    fig = viz.plot_budget_curves(runs)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["fold 0", "fold 1"]
    assert [len(ax.lines) for ax in panels] == [4, 2]                 # a curve and its ringed best per run
    curve, best = panels[0].lines[2], panels[0].lines[3]              # fold 0 at 16000 steps
    assert list(curve.get_xdata()) == [1600, 3200, 4800] and curve.get_linestyle() == "--"
    assert list(best.get_xdata()) == [4800] and best.get_ydata()[0] == 60.0
    assert panels[0].lines[0].get_color() == panels[1].lines[0].get_color()   # one colour per arm across folds
    assert len(viz.plot_budget_curves({}).axes) == 1 == len(viz.plot_budget_curves({4000: {"reference": []}}).axes)


def test_plain_glues_without_quotes_or_code_backticks():
    text = viz.Plain("the rung `square` over `square-ce`")
    assert repr(text) == "the rung square over square-ce"   # what glue pastes into the book
    assert str(text) == "the rung `square` over `square-ce`"   # what the notebook's Markdown shows
