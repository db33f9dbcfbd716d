"""crop_flip against a loop over pixels: zero fill outside the image, mirroring after the crop."""

import pytest
import torch

from torch_intnn.ops import crop_flip


def crop_flip_ref(x, pad, dy, dx, flip):
    n, c, h, w = x.shape
    out = torch.zeros_like(x)
    for b in range(n):
        for i in range(h):
            for j in range(w):
                jj = w - 1 - j if flip is not None and bool(flip[b]) else j
                r, s = int(dy[b]) + i - pad, int(dx[b]) + jj - pad
                if 0 <= r < h and 0 <= s < w:
                    out[b, :, i, j] = x[b, :, r, s]
    return out


@pytest.mark.parametrize("pad,flip", [(0, True), (1, False), (2, True), (4, True)])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8])
def test_crop_flip_matches_the_loop(pad, flip, dtype):
    g = torch.Generator().manual_seed(pad)
    x = torch.randint(0, 100, (5, 2, 6, 7), generator=g).to(dtype)
    dy, dx = torch.randint(0, 2 * pad + 1, (2, 5), generator=g)
    f = torch.randint(0, 2, (5,), generator=g).bool() if flip else None
    assert torch.equal(crop_flip(x, pad, dy, dx, f), crop_flip_ref(x, pad, dy, dx, f))


def test_crop_flip_refuses_floats():
    with pytest.raises(TypeError, match="float32"):
        crop_flip(torch.zeros(1, 1, 2, 2), 1, torch.zeros(1), torch.zeros(1))
