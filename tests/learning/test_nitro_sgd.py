"""IntegerSGD as NITRO-D configures it (nitro_d.md sec. 6), pinned against hand-computed updates.

dW = T(G / (lr_inv * amp)) + T(W / decay_inv);  W <- saturate(W - dW, 16). With lr_inv = 512 and amp = 640 the
divisor is 327,680.
"""

import torch

from torch_intnn.audit import IntegerOnly
from torch_intnn.learning import IntegerSGD


def _step(w, g, **kw):
    w = torch.tensor(w, dtype=torch.int32)
    opt = IntegerSGD([w], **kw)
    opt.set_grad(w, torch.tensor(g, dtype=torch.int64))
    with IntegerOnly():
        opt.step()
    return w.tolist()


def test_forward_layer_update_truncates_toward_zero():
    w = [1000, -1000, 5, -5, 0]
    g = [700_000, -700_000, 327_679, -327_680, -327_679]
    # T(G / 327680): 2, -2, 0, -1, 0 (floor: 2, -3, 0, -1, -1)
    assert _step(w, g, lr_inv=512, amp=640) == [998, -998, 5, -4, 0]
    assert _step(w, g, lr_inv=512, amp=640, rounding="floor") == [998, -997, 5, -4, 1]


def test_weight_decay_is_truncated_and_unscaled():
    w = [30_000, -30_000, 299, -299, -1000]
    g = [0, 0, 0, 0, 1024]
    # dW = T(G / 512) + T(W / 300): 0 + 100, 0 - 100, 0 + 0, 0 - 0, 2 - 3 (floor decay would give -4)
    assert _step(w, g, lr_inv=512, amp=1, decay_inv=300) == [29_900, -29_900, 299, -299, -999]


def test_weights_saturate_to_16_bits():
    assert _step([32_767, -32_767], [-5 * 327_680, 5 * 327_680], lr_inv=512, amp=640) == [32_767, -32_767]


def test_param_groups_carry_their_own_amp_and_decay():
    fwd = torch.tensor([100, -100], dtype=torch.int32)
    head = torch.tensor([100, -100], dtype=torch.int32)
    opt = IntegerSGD([dict(params=[fwd], amp=640, decay_inv=0), dict(params=[head], amp=1, decay_inv=50)],
                     lr_inv=512)
    g = torch.tensor([-1_000_000, 1_000_000])
    opt.set_grad(fwd, g)
    opt.set_grad(head, g)
    opt.step()
    # fwd: T(-1e6 / 327680) = -3; head: T(-1e6 / 512) = -1953, plus T(100 / 50) = 2
    assert fwd.tolist() == [103, -103]
    assert head.tolist() == [100 + 1953 - 2, -100 - 1953 + 2]

