"""Integer standardisation and per-image augmentation against plain int64 / per-image loop references."""

import pytest
import torch
import torch.nn.functional as F

from torch_intnn.audit import IntegerOnly
from torch_intnn.nn import IntRandomCropFlip, NitroStandardize


def _trunc(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def test_fit_matches_an_int64_reference():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (37, 3, 5, 7), generator=g, dtype=torch.uint8)
    images[:, 1] //= 3  # a darker channel, so its mean is negative after centring
    std = NitroStandardize(3)
    with IntegerOnly():
        std.fit(images, chunk=8)
    x = images.to(torch.int64) - 128
    for c in range(3):
        vals = x[:, c].flatten().tolist()
        mean = _trunc(sum(vals), len(vals))
        mad = _trunc(sum(abs(v - mean) for v in vals), len(vals))
        assert int(std.mean[c]) == mean
        assert int(std.mad[c]) == mad
    assert int(std.mean[1]) < 0


def test_forward_matches_the_formula_and_saturates():
    std = NitroStandardize(1, flatten=True)
    std.mean.fill_(-7)
    std.mad.fill_(20)
    x = torch.tensor([0, 100, 121, 200, 255], dtype=torch.uint8).view(1, 1, 1, 5)
    with IntegerOnly():
        y = std(x)
    # T(51 * (x - 128 + 7) / 20): -121 -> T(-308.55) -> -127 (saturated); -21 -> T(-53.55) = -53 (floor -54)
    assert y.dtype == torch.int8 and y.shape == (1, 5)
    assert y.tolist() == [[-127, -53, 0, 127, 127]]


def test_unfitted_standardisation_is_centring():
    x = torch.tensor([0, 1, 128, 255], dtype=torch.uint8).view(1, 1, 2, 2)
    assert NitroStandardize(1)(x).flatten().tolist() == [-127, -127, 0, 127]


def test_fit_rejects_wrong_images():
    with pytest.raises(ValueError, match="uint8 images with 3 channels"):
        NitroStandardize(3).fit(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))


def _augment_reference(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
    coins = torch.randint(0, 2, (n, 1), generator=generator) if flip else torch.zeros(n, 1, dtype=torch.int64)
    out = torch.empty_like(x)
    for i in range(n):
        padded = F.pad(x[i], (pad, pad, pad, pad))
        crop = padded[:, int(dy[i]) : int(dy[i]) + h, int(dx[i]) : int(dx[i]) + w]
        out[i] = crop.flip(-1) if int(coins[i]) else crop
    return out


@pytest.mark.parametrize("pad,flip", [(2, False), (4, True), (0, True)])
def test_crop_flip_matches_a_per_image_loop(pad, flip):
    x = torch.randint(0, 256, (9, 3, 6, 5), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    aug = IntRandomCropFlip(pad, flip).train()
    with IntegerOnly():
        y = aug(x, torch.Generator().manual_seed(7))
    assert torch.equal(y, _augment_reference(x, pad, flip, torch.Generator().manual_seed(7)))
    assert not torch.equal(y, x)


def test_crop_flip_is_identity_in_eval_and_needs_a_generator_in_training():
    x = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    assert IntRandomCropFlip(2, True).eval()(x) is x
    with pytest.raises(ValueError, match="generator"):
        IntRandomCropFlip(2, True).train()(x)
