"""MaskLoss / soft_dice_loss and CodeLoss against hand computations and MONAI."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.losses import FocalLoss

from agvq.errors import ConfigError
from agvq.models.losses import CodeLoss as _CodeLoss
from agvq.models.losses import MaskLoss as _MaskLoss
from agvq.models.losses import soft_dice_loss


def MaskLoss(dice_weight=1.0, ce_weight=0.0):  # noqa: N802  (test defaults: soft Dice only)
    return _MaskLoss(dice_weight, ce_weight)


def CodeLoss(focal_weight=1.0, ce_weight=1.0, gamma=2.0, code_weights=None):  # noqa: N802
    return _CodeLoss(focal_weight, ce_weight, gamma, code_weights)



def _np_softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _hand_dice(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> float:
    """1 - mean over {background, foreground} of batch-pooled soft Dice."""
    p = _np_softmax(logits.double().numpy())
    t = target.double().numpy()[:, 0]
    onehot = np.stack([1 - t, t], axis=1)
    axes = (0, 2, 3, 4)
    dice = (2 * (p * onehot).sum(axes) + smooth) / (p.sum(axes) + onehot.sum(axes) + smooth)
    return float(1 - dice.mean())


def test_soft_dice_matches_hand_computation():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 5, 4, 3)
    target = (torch.rand(2, 1, 5, 4, 3) > 0.6).float()
    assert soft_dice_loss(logits, target).item() == pytest.approx(_hand_dice(logits, target), rel=1e-5)
    # target given as (B, X, Y, Z) bool gives the same value
    assert MaskLoss()(logits, target[:, 0].bool()).item() == pytest.approx(_hand_dice(logits, target), rel=1e-5)


def test_mask_loss_with_ce_and_limits():
    torch.manual_seed(1)
    logits = torch.randn(2, 2, 4, 4, 4, requires_grad=True)
    target = (torch.rand(2, 1, 4, 4, 4) > 0.5).float()
    ce = torch.nn.functional.cross_entropy(logits, target[:, 0].long())
    loss = MaskLoss(dice_weight=0.5, ce_weight=2.0)(logits, target)
    assert loss.item() == pytest.approx(0.5 * _hand_dice(logits.detach(), target) + 2.0 * ce.item(), rel=1e-5)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    perfect = torch.cat([1 - target, target], 1) * 40 - 20
    assert MaskLoss(1.0, 1.0)(perfect, target).item() < 1e-6
    # an all-empty batch (region absent): a confident correct prediction gives ~0 loss
    empty = torch.zeros(2, 1, 4, 4, 4)
    assert MaskLoss()(torch.cat([empty + 20, empty - 20], 1), empty).item() < 1e-4


def test_mask_loss_errors():
    with pytest.raises(ConfigError):
        MaskLoss(0.0, 0.0)
    with pytest.raises(ConfigError):
        MaskLoss(-1.0, 1.0)
    with pytest.raises(ValueError):
        MaskLoss()(torch.randn(1, 3, 4, 4, 4), torch.zeros(1, 1, 4, 4, 4))
    with pytest.raises(ValueError):
        MaskLoss()(torch.randn(1, 2, 4, 4, 4), torch.zeros(1, 1, 4, 4, 2))


def _hand_focal_ce(logits: torch.Tensor, idx: torch.Tensor, gamma: float) -> tuple[float, float]:
    p = _np_softmax(logits.double().numpy())
    pt = np.take_along_axis(p, idx.numpy()[:, None], axis=1)[:, 0]
    return float(np.mean(-((1 - pt) ** gamma) * np.log(pt))), float(np.mean(-np.log(pt)))


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 3.5])
def test_code_loss_matches_hand_computation(gamma):
    torch.manual_seed(2)
    k = 7
    logits = torch.randn(2, k, 3, 4, 2) * 2
    idx = torch.randint(k, (2, 3, 4, 2))
    focal, ce = _hand_focal_ce(logits, idx, gamma)
    assert CodeLoss(1.0, 0.0, gamma)(logits, idx).item() == pytest.approx(focal, rel=1e-5)
    assert CodeLoss(0.0, 1.0, gamma)(logits, idx).item() == pytest.approx(ce, rel=1e-5)
    assert CodeLoss(0.3, 1.7, gamma)(logits, idx).item() == pytest.approx(0.3 * focal + 1.7 * ce, rel=1e-5)
    # MONAI's softmax focal loss averages over the class axis too: ours = K * MONAI's
    ref = FocalLoss(to_onehot_y=True, use_softmax=True, gamma=gamma)(logits, idx[:, None])
    assert CodeLoss(1.0, 0.0, gamma)(logits, idx).item() == pytest.approx(k * ref.item(), rel=1e-5)


def test_code_loss_gradient_and_errors():
    torch.manual_seed(3)
    logits = torch.randn(1, 16, 2, 2, 2, requires_grad=True)
    idx = torch.randint(16, (1, 2, 2, 2))
    CodeLoss()(logits, idx).backward()
    assert torch.isfinite(logits.grad).all()
    # the gradient raises the target logit
    assert (logits.grad.gather(1, idx[:, None]) < 0).all()
    with pytest.raises(ValueError):
        CodeLoss()(logits, idx[:, :1])
    with pytest.raises(ConfigError):
        CodeLoss(0.0, 0.0)
    with pytest.raises(ConfigError):
        CodeLoss(gamma=-1.0)


def test_code_loss_with_code_weights_is_the_weighted_mean():
    torch.manual_seed(4)
    k = 5
    logits = torch.randn(2, k, 3, 2, 2) * 2
    idx = torch.randint(k, (2, 3, 2, 2))
    weights = torch.tensor([0.2, 1.0, 3.0, 0.0, 0.5])
    log_p = torch.log_softmax(logits.double(), 1).gather(1, idx[:, None]).squeeze(1)
    w = weights.double()[idx]
    focal = float(-(w * (1 - log_p.exp()) ** 2 * log_p).sum() / w.sum())
    ce = float(-(w * log_p).sum() / w.sum())
    loss = CodeLoss(0.4, 1.1, 2.0, code_weights=weights)(logits, idx)
    assert loss.item() == pytest.approx(0.4 * focal + 1.1 * ce, rel=1e-5)
    # equal weights are the plain loss; a code of weight 0 does not count at all
    assert CodeLoss(1.0, 1.0, code_weights=torch.full((k,), 2.5))(logits, idx).item() == \
        pytest.approx(CodeLoss(1.0, 1.0)(logits, idx).item(), rel=1e-6)
    only3 = torch.full_like(idx, 3)
    with pytest.raises(ValueError):
        CodeLoss(code_weights=torch.ones(k + 1))(logits, idx)
    with pytest.raises(ConfigError):
        CodeLoss(code_weights=torch.tensor([1.0, -1.0]))
    with pytest.raises(ConfigError):
        CodeLoss(code_weights=torch.tensor([1.0, float("nan")]))
    assert CodeLoss(code_weights=weights)(logits, only3).item() == 0.0


def test_code_balance_weights_follow_the_codebook_usage():
    from agvq.training.tasks import code_balance_weights

    usage = torch.tensor([90.0, 9.0, 1.0, 0.0])
    w = code_balance_weights(usage, 0.5)
    freq = usage / usage.sum()
    assert float((w * freq).sum()) == pytest.approx(1.0)  # mean weight over the code distribution is 1
    assert w[3] == 0 and w[2] > w[1] > w[0] > 0
    assert float(w[2] / w[0]) == pytest.approx(90 ** 0.5, rel=1e-5)
    torch.testing.assert_close(code_balance_weights(usage, 0.0), torch.tensor([1.0, 1.0, 1.0, 0.0]))
    with pytest.raises(ConfigError):
        code_balance_weights(usage, -0.5)
