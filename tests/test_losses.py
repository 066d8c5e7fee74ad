import math

import pytest
import torch

from defectlib.losses import LOSSES, build_loss, class_weights_from_frequencies


def _logits(target, num_classes=3, scale=20.0, flip=False):
    one_hot = torch.nn.functional.one_hot(target, num_classes).permute(0, 3, 1, 2).float()
    signed = 2 * one_hot - 1  # +scale on the true class, -scale elsewhere: perfect for softmax and sigmoid
    return scale * (-signed if flip else signed)


TARGET = torch.tensor([[[0, 1], [2, 0]]])


def test_ce_perfect_and_uniform():
    ce = build_loss("ce")
    assert ce(_logits(TARGET), TARGET).item() < 1e-6
    assert ce(torch.zeros(1, 3, 2, 2), TARGET).item() == pytest.approx(math.log(3))


def test_ce_worst_prediction():
    # logits: -20 for the true class, +20 for the two others -> -log(e^-20 / (e^-20 + 2 e^20)) = log(1 + 2 e^40)
    assert build_loss("ce")(_logits(TARGET, flip=True), TARGET).item() == pytest.approx(math.log(1 + 2 * math.exp(40)), rel=1e-5)


def test_dice_perfect_and_worst():
    dice = build_loss("dice")
    assert dice(_logits(TARGET, scale=50), TARGET).item() == pytest.approx(0.0, abs=1e-4)
    assert dice(_logits(TARGET, scale=50, flip=True), TARGET).item() > 0.6


def test_all_background_mask():
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    for name in ("ce", "dice", "ce+dice", "focal", "lovasz", "tversky", "ohem_ce"):
        loss = build_loss(name)(_logits(target, scale=50), target)
        assert torch.isfinite(loss) and loss.item() == pytest.approx(0.0, abs=1e-3), name


def test_uniform_class_weights_equal_no_weights():
    weights = class_weights_from_frequencies([10, 10, 10])
    assert torch.equal(weights, torch.ones(3))
    logits = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 3, (2, 4, 4), generator=torch.Generator().manual_seed(1))
    assert build_loss("ce", weights)(logits, target).item() == pytest.approx(build_loss("ce")(logits, target).item())


def test_class_weights_formula():
    # f = (0.64, 0.16, 0.16, 0.04) -> f^-1/2 = (1.25, 2.5, 2.5, 5), mean 2.8125
    w = class_weights_from_frequencies([64, 16, 16, 4])
    assert w.tolist() == pytest.approx([1.25 / 2.8125, 2.5 / 2.8125, 2.5 / 2.8125, 5 / 2.8125])
    assert class_weights_from_frequencies([5, 0, 5])[1].item() == 0.0


def test_every_loss_builds_and_backpropagates():
    target = torch.randint(0, 6, (2, 8, 8))
    for name in [*LOSSES, "ce+dice", "focal+dice", "ce+lovasz"]:
        logits = torch.randn(2, 6, 8, 8, requires_grad=True)
        build_loss(name)(logits, target).backward()
        assert logits.grad is not None, name
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("nope")


def test_class_weights_reach_the_loss_or_fail_loudly():
    logits = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 3, (2, 4, 4), generator=torch.Generator().manual_seed(1))
    weights = torch.tensor([0.1, 1.0, 5.0])
    combined = build_loss("ce+lovasz", weights)
    assert combined(logits, target).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, target, weight=weights).item() + build_loss("lovasz")(logits, target).item(),
        rel=1e-5)
    assert build_loss("dice", weights).class_weights is weights   # smp's Dice, Focal and Tversky take them too
    with pytest.raises(ValueError, match="takes no class weights"):
        build_loss("lovasz", weights)


def test_loss_parameters_are_checked_and_passed():
    focal = build_loss("focal", params={"focal": {"gamma": 3.0}})
    assert focal.focal_loss_fn.keywords["gamma"] == 3.0
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['gama'\]"):
        build_loss("focal", params={"focal": {"gama": 3.0}})
    with pytest.raises(ValueError, match="not a part of loss"):
        build_loss("ce", params={"dice": {}})


def test_ohem_keeps_only_hard_pixels():
    from defectlib.losses import OhemCrossEntropy

    target = torch.zeros(1, 1, 4, dtype=torch.long)
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 0, 0, :3] = 10.0          # three easy pixels (p(true) ~ 1)
    logits[0, 1, 0, 3] = 2.0            # one hard pixel: p(true) = 1 / (1 + e^2)
    loss = OhemCrossEntropy(thresh=0.7, min_kept=1)(logits, target)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(2.0)), rel=1e-5)
    kept_all = OhemCrossEntropy(thresh=0.7, min_kept=4)(logits, target)
    assert kept_all.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, target).item(), rel=1e-5)


def test_class_weights_can_be_withheld_from_a_part():
    weights = torch.tensor([0.1, 1.0, 5.0])
    loss = build_loss("ce+dice", weights, {"dice": {"class_weights": None}})
    assert loss.parts["dice"].class_weights is None
    assert torch.equal(loss.parts["ce"].weight, weights)
    with pytest.raises(ValueError, match="only null"):
        build_loss("ce+dice", weights, {"dice": {"class_weights": [1, 2, 3]}})


def test_the_image_score_term_punishes_the_most_confident_false_alarm_only():
    free = torch.zeros(1, 2, 2, dtype=torch.long)
    clean = _logits(free, scale=10)                     # background everywhere, confidently
    alarm = clean.clone()
    alarm[0, :, 0, 0] = torch.tensor([0.0, 1.0, 0.0])   # one pixel leaning to class 1
    image = build_loss("image")
    assert image(clean, free).item() == pytest.approx(0.0, abs=1e-5)
    score = 1 - alarm[0, :, 0, 0].softmax(0)[0]
    assert image(alarm, free).item() == pytest.approx(-math.log(1 - score.item()), rel=1e-4)
    # a defect image whose defect pixel is found costs nothing; one whose every pixel says background does
    assert image(_logits(TARGET, scale=10), TARGET).item() == pytest.approx(0.0, abs=1e-5)
    assert image(_logits(torch.zeros_like(TARGET), scale=10), TARGET).item() > 10
    logits = alarm.clone().requires_grad_(True)
    image(logits, free).backward()
    touched = logits.grad.abs().sum(1)[0]
    assert touched[0, 0] > 0 and touched.flatten()[1:].abs().sum() == 0   # the max pixel alone
    assert build_loss("focal+dice+image", params={"image": {"weight": 0.5}}).parts["image"].weight == 0.5
