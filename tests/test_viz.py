import numpy as np

from defectlib import viz


def test_error_map_colours_found_false_and_missed_pixels():
    truth = np.array([[0, 1, 1, 2]])
    pred = np.array([[1, 1, 0, 1]])
    rgb = viz.error_map(truth, pred)
    assert tuple(rgb[0, 0]) == viz.ERROR_COLORS["false"]      # false alarm on background
    assert tuple(rgb[0, 1]) == viz.ERROR_COLORS["found"]
    assert tuple(rgb[0, 2]) == viz.ERROR_COLORS["missed"]
    assert tuple(rgb[0, 3]) == viz.ERROR_COLORS["false"]      # wrong defect class
    assert tuple(viz.error_map(np.zeros((1, 1), int), np.zeros((1, 1), int))[0, 0]) == (255, 255, 255)


def test_overlay_keeps_background_and_colours_classes():
    image = np.full((4, 4), 100, np.uint8)
    mask = np.zeros((4, 4), np.uint8)
    mask[1:3, 1:3] = 3
    rgb = viz.overlay(image, mask, alpha=1.0)
    assert tuple(rgb[0, 0]) == (100, 100, 100)
    assert tuple(rgb[1, 1]) == viz.CLASS_COLORS["Crack"]
