"""NITRO-D blocks and heads against a plain int64 reference of nitro_d.md secs. 4-5, and the NHWC max-pool."""

import pytest
import torch
import torch.nn.functional as F

from torch_intnn.audit import IntegerOnly
from torch_intnn.nn import NitroConvBlock, NitroLinearBlock
from torch_intnn.nn.nitro_blocks import pool_to_d
from torch_intnn.ops import max_pool2d, max_unpool2d

I64 = torch.int64


def trunc(a: torch.Tensor, b: int) -> torch.Tensor:
    """Truncating division by a positive int, as sign(a) * floor(|a| / b): the obviously correct reference."""
    return torch.sign(a) * (a.abs() // b)


@pytest.mark.parametrize("shape,kernel", [
    ((128, 32, 32), (8, 4)), ((256, 32, 32), (8, 8)), ((256, 16, 16), (4, 4)), ((512, 16, 16), (8, 4)),
    ((512, 8, 8), (4, 2)), ((512, 4, 4), (2, 1)), ((128, 28, 28), (8, 4)), ((512, 3, 3), (2, 1)),
])
def test_pool_to_d_reproduces_the_papers_table(shape, kernel):
    assert pool_to_d(*shape, 4096) == kernel  # nitro_d.md sec. 4


def _conv_ref(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    xp = F.pad(x.to(I64), (1, 1, 1, 1))
    h, wd = x.shape[2:]
    z = torch.zeros(x.shape[0], w.shape[0], h, wd, dtype=I64)
    for k in range(3):
        for l in range(3):
            z += torch.einsum("nchw,fc->nfhw", xp[:, :, k:k + h, l:l + wd], w[:, :, k, l].to(I64))
    return z


def _conv_weight_ref(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    xp = F.pad(x.to(I64), (1, 1, 1, 1))
    h, wd = x.shape[2:]
    out = torch.zeros(g.shape[1], x.shape[1], 3, 3, dtype=I64)
    for k in range(3):
        for l in range(3):
            out[:, :, k, l] = torch.einsum("nfhw,nchw->fc", g.to(I64), xp[:, :, k:k + h, l:l + wd])
    return out


def _relu_ref(s):
    return torch.where(s >= 0, s, trunc(s, 4)) - 36


def _block_ref(block, x, target, conv: bool):
    """Forward and local gradients of one block, in int64 with full-size (unpooled) tensors."""
    w, w_lr = block.layer.weight.to(I64), block.head.linear.weight.to(I64)
    z = _conv_ref(x, w) if conv else x.to(I64) @ w.T
    s = trunc(z, block.scaling.scale_factor).clamp(-127, 127)
    h = _relu_ref(s)
    kernel = block.head.kernel
    if conv and kernel != (1, 1):
        p, idx = max_pool2d(h, kernel, ceil_mode=True, return_indices=True)
    else:
        p, idx = h, None
    pf = p.reshape(p.shape[0], -1)
    y_hat = trunc(pf @ w_lr.T, block.head.scaling.scale_factor).clamp(-127, 127)
    delta = (y_hat - target).clamp(-127, 127)
    g_lr = delta.T @ pf
    g_p = delta @ w_lr
    g_h = max_unpool2d(g_p.view(p.shape), idx, kernel, h.shape[2:]) if idx is not None else g_p.view(h.shape)
    g_s = torch.where(s < 0, trunc(g_h, 4), g_h).masked_fill(s >= 127, 0)
    g_w = _conv_weight_ref(x, g_s) if conv else g_s.T @ x.to(I64)
    return h, y_hat, g_lr, g_w


def _randomise(block, gen):
    block.layer.weight.copy_(torch.randint(-3000, 3001, block.layer.weight.shape, generator=gen))
    block.head.linear.weight.copy_(torch.randint(-3000, 3001, block.head.linear.weight.shape, generator=gen))


@pytest.mark.parametrize("c_in,c_out,size,d_max", [(3, 4, (7, 7), 16), (2, 5, (6, 4), None), (3, 8, (8, 8), 64)])
def test_conv_block_matches_int64_reference(c_in, c_out, size, d_max):
    gen = torch.Generator().manual_seed(1)
    block = NitroConvBlock(c_in, c_out, size, 10, d_max=d_max or 10**6, generator=gen).train()
    _randomise(block, gen)
    x = torch.randint(-67, 92, (5, c_in, *size), generator=gen, dtype=torch.int8)
    target = torch.zeros(5, 10, dtype=I64).scatter_(1, torch.randint(0, 10, (5, 1), generator=gen), 32)
    h_ref, y_ref, g_lr_ref, g_w_ref = _block_ref(block, x, target, conv=True)
    with IntegerOnly():
        h = block(x)
        y_hat = block.head(block.output)
        delta = (y_hat.to(torch.int32) - target.to(torch.int32)).clamp(-127, 127).to(torch.int8)
        g_lr, g_w = block.backward(delta)
    assert torch.equal(h.to(I64), h_ref)
    assert torch.equal(y_hat.to(I64), y_ref)
    assert y_ref.abs().sum() > 0 and g_w_ref.abs().sum() > 0  # the example exercises non-trivial values
    assert torch.equal(g_lr.to(I64), g_lr_ref)
    assert torch.equal(g_w.to(I64), g_w_ref)


def test_linear_block_matches_int64_reference():
    gen = torch.Generator().manual_seed(2)
    block = NitroLinearBlock(30, 12, 10, generator=gen).train()
    _randomise(block, gen)
    x = torch.randint(-127, 128, (6, 30), generator=gen, dtype=torch.int8)
    target = torch.zeros(6, 10, dtype=I64).scatter_(1, torch.randint(0, 10, (6, 1), generator=gen), 32)
    h_ref, y_ref, g_lr_ref, g_w_ref = _block_ref(block, x, target, conv=False)
    with IntegerOnly():
        h = block(x)
        y_hat = block.head(block.output)
        delta = (y_hat.to(torch.int32) - target.to(torch.int32)).clamp(-127, 127).to(torch.int8)
        g_lr, g_w = block.backward(delta)
    assert torch.equal(h.to(I64), h_ref) and torch.equal(y_hat.to(I64), y_ref)
    assert torch.equal(g_lr.to(I64), g_lr_ref) and torch.equal(g_w.to(I64), g_w_ref)
    assert g_w_ref.abs().sum() > 0


def test_block_backward_needs_a_training_forward():
    block = NitroLinearBlock(4, 3).eval()
    block(torch.zeros(2, 4, dtype=torch.int8))
    with pytest.raises(RuntimeError, match="training-mode forward"):
        block.backward(torch.zeros(2, 10, dtype=torch.int8))


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_blocks_multiply_through_their_layers_and_free_what_they_kept(kind):
    """A block's forward and gradients are its IntLinear / IntConv2d's own (forward, weight_grad, input_grad)."""
    g = torch.Generator().manual_seed(0)
    if kind == "linear":
        block = NitroLinearBlock(20, 12, generator=g).train()
        x = torch.randint(-100, 100, (5, 20), generator=g).to(torch.int8)
    else:
        block = NitroConvBlock(2, 4, (6, 6), d_max=40, generator=g).train()
        x = torch.randint(-100, 100, (5, 2, 6, 6), generator=g).to(torch.int8)
    assert block.layer.narrow and block.head.linear.narrow
    h = block(x)
    assert block.layer.input is x and torch.equal(h, block.act(block.scaling(block.layer(x))))
    block(x)  # the layer call above kept its own input again; the block's forward once more
    y_hat = block.head(block.output)
    assert block.head.linear.input is not None
    delta = torch.randint(-50, 50, y_hat.shape, generator=g).to(torch.int8)
    w_head = block.head.linear.weight.to(torch.int64)
    p = block.head.linear.input.to(torch.int64)
    grad_head, grad_fwd = block.backward(delta)
    assert torch.equal(grad_head.to(torch.int64), delta.to(torch.int64).T @ p)
    assert grad_fwd.shape == block.layer.weight.shape and w_head.shape == grad_head.shape
    assert block.layer.input is None and block.head.linear.input is None and block.output is None
    assert block.act.kept is None and getattr(block.layer, "columns", None) is None
