"""Pocket activations against PocketNN's tables (pocketnn.md sec. 1) and a per-element Python reference."""

import pytest
import torch

from torch_intnn.audit import IntegerOnly
from torch_intnn.nn.activations import (
    INT_MAX, PocketLeakyReLU, PocketReLU8, PocketRescale, PocketSigmoid, PocketTanh,
)


def c_div(a: int, b: int) -> int:
    """C's integer division (truncation toward zero), on Python ints."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def ref_tanh(u: int) -> tuple[int, int]:
    """pocketTanh, transcribed from the reference table (y, G)."""
    if u < -127:
        return -127, 127
    if u < -74:
        return c_div(u, 4) - 88, 8
    if u < -31:
        return u - 32, 2
    if u < 32:
        return 2 * u, 1
    if u < 75:
        return u + 32, 2
    if u < 128:
        return c_div(u, 4) + 88, 8
    return 127, 127


def ref_sigmoid(u: int) -> tuple[int, int]:
    if u < -127:
        return 1, 127
    if u < -74:
        return c_div(u, 8) + 20, 8
    if u < -31:
        return c_div(u, 2) + 48, 2
    if u < 32:
        return u + 64, 1
    if u < 75:
        return c_div(u, 2) + 80, 2
    if u < 128:
        return c_div(u, 8) + 108, 8
    return 127, 127


# pocketnn.md sec. 1.1, the test vectors: u -> (y, G)
TANH_VECTORS = {
    -200: (-127, 127), -128: (-127, 127), -127: (-119, 8), -75: (-106, 8), -74: (-106, 2), -32: (-64, 2),
    -31: (-62, 1), 0: (0, 1), 31: (62, 1), 32: (64, 2), 74: (106, 2), 75: (106, 8), 127: (119, 8), 128: (127, 127),
}
# sec. 1.2 evaluated at the same breakpoints (range [1, 127], y(0) = 64, jumps 5 -> 1 and 123 -> 127)
SIGMOID_VECTORS = {
    -200: (1, 127), -128: (1, 127), -127: (5, 8), -75: (11, 8), -74: (11, 2), -32: (32, 2), -31: (33, 1),
    0: (64, 1), 31: (95, 1), 32: (96, 2), 74: (117, 2), 75: (117, 8), 127: (123, 8), 128: (127, 127),
}
SLOPE_OF_G = {1: 8, 2: 4, 8: 1, 127: 0}


def _run(act, z):
    act.train()
    y = act(z)
    return y, act.inv_slope, act.slope


@pytest.mark.parametrize("fan_in", [1, 784, 50])
def test_tanh_breakpoints(fan_in):
    d = 256 * fan_in
    u = torch.tensor(list(TANH_VECTORS))
    y, g, s = _run(PocketTanh(fan_in), u * d)
    assert y.dtype == torch.int8 and g.dtype == torch.int32
    assert y.tolist() == [v[0] for v in TANH_VECTORS.values()]
    assert g.tolist() == [v[1] for v in TANH_VECTORS.values()]
    assert s.tolist() == [SLOPE_OF_G[v[1]] for v in TANH_VECTORS.values()]


def test_sigmoid_breakpoints():
    u = torch.tensor(list(SIGMOID_VECTORS))
    y, g, s = _run(PocketSigmoid(), u * 256)
    assert y.tolist() == [v[0] for v in SIGMOID_VECTORS.values()]
    assert g.tolist() == [v[1] for v in SIGMOID_VECTORS.values()]
    assert s.tolist() == [SLOPE_OF_G[v[1]] for v in SIGMOID_VECTORS.values()]


@pytest.mark.parametrize("cls, ref, fan_in", [(PocketTanh, ref_tanh, 100), (PocketSigmoid, ref_sigmoid, None)])
def test_every_z_matches_the_reference_with_truncation(cls, ref, fan_in):
    act = cls(fan_in) if fan_in else cls()
    d = 256 * (fan_in or 1)
    # every u in [-300, 300], each hit from both ends of its truncation interval (z = u*d -+ (d-1))
    z = [u * d + off for u in range(-300, 301) for off in (-(d - 1), 0, d - 1)]
    y, g, _ = _run(act, torch.tensor(z, dtype=torch.int64))
    expected = [ref(c_div(v, d)) for v in z]
    assert y.tolist() == [e[0] for e in expected]
    assert g.tolist() == [e[1] for e in expected]


def test_truncation_is_toward_zero_not_floor():
    # z = -1: floor would give u = -1 (y = -2); PocketNN's T gives u = 0 (y = 0)
    y, _, _ = _run(PocketTanh(1), torch.tensor([-1, -255, -256, -257]))
    assert y.tolist() == [0, 0, -2, -2]


def test_shift_scaling_rounds_to_nearest():
    act = PocketTanh(shift=4)  # u = round(z / 16), halves up
    y, _, _ = _run(act, torch.tensor([7, 8, -8, -9, 16 * 40, 16 * 200, -16 * 200], dtype=torch.int32))
    assert y.tolist() == [0, 2, 0, -2, 72, 127, -127]


def test_eval_mode_keeps_nothing():
    act = PocketTanh(10).eval()
    act(torch.arange(-5, 5))
    with pytest.raises(RuntimeError, match="training-mode forward"):
        act.slope


def test_relu8():
    z = torch.tensor([-500, -1, 0, 1, 126, 127, 128, 500], dtype=torch.int64)
    y, g, s = _run(PocketReLU8(), z)
    assert y.dtype == torch.int8
    assert y.tolist() == [0, 0, 0, 1, 126, 127, 127, 127]
    assert g.tolist() == [INT_MAX, INT_MAX, 1, 1, 1, 1, INT_MAX, INT_MAX]
    assert s.tolist() == [0, 0, 8, 8, 8, 8, 0, 0]


def test_leaky_relu():
    z = torch.tensor([-40000, -32768, -32767, -32766, -6, -5, -4, -1, 0, 1, 32766, 32767, 40000])
    y, g, s = _run(PocketLeakyReLU(), z)
    assert y.dtype == torch.int32
    assert y.tolist() == [-32767, -32767, -6553, -6553, -1, -1, 0, 0, 0, 1, 32766, 32767, 32767]
    assert g.tolist() == [INT_MAX, INT_MAX, 5, 5, 5, 5, 5, 5, 1, 1, 1, INT_MAX, INT_MAX]
    assert s.tolist() == [0, 0, 2, 2, 2, 2, 2, 2, 8, 8, 8, 0, 0]


def test_rescale_truncates_and_saturates():
    y, g, s = _run(PocketRescale(), torch.tensor([-513, -255, 255, 513]))
    assert y.tolist() == [-2, 0, 0, 2] and g.tolist() == [1, 1, 1, 1]
    y, g, s = _run(PocketRescale(shift=2, bits=8), torch.tensor([-600, -6, 6, 600]))
    assert y.dtype == torch.int16 and y.tolist() == [-127, -1, 2, 127]
    assert s.tolist() == [0, 8, 8, 0] and g.tolist() == [INT_MAX, 1, 1, INT_MAX]


@pytest.mark.parametrize("act", [PocketTanh(784), PocketTanh(shift=12), PocketSigmoid(), PocketReLU8(),
                                 PocketLeakyReLU(), PocketRescale(shift=3)])
def test_forward_and_slopes_are_integer_only(act):
    z = torch.randint(-(2**30), 2**30, (7, 13), dtype=torch.int64)
    with IntegerOnly():
        _run(act, z)
    assert "int8" in repr(act) or "int32" in repr(act) or "int16" in repr(act)


def _every_activation():
    from torch_intnn.nn import NitroReLU

    return [PocketTanh(3), PocketSigmoid(), PocketTanh(shift=4), PocketReLU8(), PocketLeakyReLU(),
            PocketRescale(), PocketRescale(shift=2, bits=8), NitroReLU(4), NitroReLU(8)]


def _inputs(act, seed=0):
    from torch_intnn.nn import NitroReLU

    g = torch.Generator().manual_seed(seed)
    if isinstance(act, NitroReLU):  # it takes NITRO-Scaling's int8 output, saturation at 127 included
        z = torch.cat([torch.randint(-128, 128, (200,), generator=g), torch.tensor([-128, -127, -1, 0, 126, 127])])
        return z.to(torch.int8)
    return torch.randint(-70_000, 70_000, (300,), generator=g, dtype=torch.int64)


@pytest.mark.parametrize("act", _every_activation(), ids=lambda a: type(a).__name__)
def test_one_derivative_protocol_backward_is_truncated_division_by_g(act):
    """Every activation, pocket or NITRO-D, answers inv_slope, slope and backward(grad, at=) the same way."""
    from torch_intnn.nn.activations import IntActivation

    assert isinstance(act, IntActivation)
    z = _inputs(act)
    act.train()
    act(z)
    g_inv, slope = act.inv_slope, act.slope
    assert g_inv.dtype == slope.dtype == torch.int32 and g_inv.shape == slope.shape == z.shape
    grad = torch.randint(-2**20, 2**20, z.shape, generator=torch.Generator().manual_seed(5), dtype=torch.int64)
    expected = [c_div(int(a), int(b)) for a, b in zip(grad, g_inv)]  # T(g / G) on Python ints
    assert act.backward(grad).tolist() == expected
    # slope 0 marks exactly the flat pieces (G = 127 or INT_MAX)
    assert torch.equal(slope == 0, (g_inv == 127) | (g_inv == INT_MAX))
    # at=: the same at a subset of the input values, as a pooled head passes them
    pick = torch.arange(0, z.numel(), 7)
    assert act.backward(grad[pick], at=z[pick]).tolist() == [expected[i] for i in pick.tolist()]
    with pytest.raises(ValueError, match="differ"):
        act.backward(grad[:3], at=z[:4])


def test_nitro_relu_slopes_by_hand():
    from torch_intnn.nn import NitroReLU

    act = NitroReLU(4).train()
    act(torch.tensor([-128, -127, -5, -1, 0, 1, 126, 127], dtype=torch.int8))
    assert act.inv_slope.tolist() == [4, 4, 4, 4, 1, 1, 1, INT_MAX]
    assert act.slope.tolist() == [2, 2, 2, 2, 8, 8, 8, 0]  # round(8 / 4) = 2 eighths below 0
    act.eval()
    act(torch.zeros(3, dtype=torch.int8))
    with pytest.raises(RuntimeError, match="training-mode forward"):
        act.slope
