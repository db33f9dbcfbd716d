"""torch.compile: every integer module and kernel traces as one graph (fullgraph=True) and gives eager's bits.

The default tests use the ``eager`` backend (tracing only: cheap); the ``slow`` ones run Inductor, which fuses
the limb split and recombination around ``_int_mm``, and check its results are bit-identical to eager.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torch_intnn import ops
from torch_intnn.nn import IntAvgPool2d, IntConv2d, IntFlatten, IntLinear, IntMaxPool2d, ToIntTensor


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()  # independent tests; no recompilation limit carried over
    yield
    torch._dynamo.reset()


def ints(shape, lo, hi, dtype=torch.int8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi + 1, shape, generator=g, dtype=torch.int64).to(dtype)


def cnn(seed: int = 0) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    return nn.Sequential(
        IntConv2d(3, 8, 3, 1, bias=True, generator=g), IntMaxPool2d(2), IntAvgPool2d(2, rounding="round"),
        IntFlatten(), IntLinear(8 * 2 * 2, 10, input_bits=32, generator=g),
    )


MODULES = {  # name -> (module factory, input)
    "IntLinear": (lambda: IntLinear(37, 11, generator=torch.Generator().manual_seed(1)), ints((5, 37), -128, 127)),
    "IntLinear-uint8": (lambda: IntLinear(784, 10, generator=torch.Generator().manual_seed(1)),
                        ints((3, 784), 0, 255, torch.uint8)),
    "IntConv2d": (lambda: IntConv2d(3, 5, 3, 1, generator=torch.Generator().manual_seed(2)),
                  ints((2, 3, 7, 6), -128, 127)),
    "IntMaxPool2d": (lambda: IntMaxPool2d(2), ints((2, 3, 7, 6), -1000, 1000, torch.int32)),
    "IntAvgPool2d": (lambda: IntAvgPool2d(3, rounding="trunc"), ints((2, 3, 7, 6), -1000, 1000, torch.int32)),
    "IntFlatten": (lambda: IntFlatten(), ints((2, 3, 4), -5, 5, torch.int32)),
    "ToIntTensor": (lambda: ToIntTensor(center=True), ints((1, 5, 5), 0, 255, torch.uint8)),
    "Sequential": (cnn, ints((2, 3, 9, 8), -128, 127)),
}


@pytest.mark.parametrize("name", list(MODULES))
@pytest.mark.parametrize("training", [False, True])
def test_modules_compile_fullgraph(name, training):
    factory, x = MODULES[name]
    module = factory().train(training)
    expected = module(x)
    compiled = torch.compile(module, backend="eager", fullgraph=True)
    out = compiled(x)
    assert out.dtype == expected.dtype and torch.equal(out, expected)
    if hasattr(module, "input"):  # the training-mode side effect survives tracing
        assert (module.input is not None) == training
        if training:
            assert torch.equal(module.input, x)


def pool_and_route(x: torch.Tensor) -> torch.Tensor:
    values, idx = ops.max_pool2d(x, 2, ceil_mode=True, return_indices=True)
    return ops.max_unpool2d(values, idx, 2, x.shape[2:])


def kernel_cases():
    a8, w16 = ints((9, 37), -128, 127), ints((11, 37), -32768, 32767, torch.int32, seed=1)
    a16, u8 = ints((9, 37), -32768, 32767, torch.int16, seed=2), ints((9, 37), 0, 255, torch.uint8, seed=3)
    x, w = ints((2, 3, 7, 6), -128, 127, seed=4), ints((4, 3, 3, 3), -32768, 32767, torch.int32, seed=5)
    g = ints((2, 4, 7, 6), -128, 127, seed=6)
    p = ints((2, 3, 7, 6), -1000, 1000, torch.int32, seed=7)
    return {
        "int8 x int8": (lambda: ops.int_matmul(a8, a8.T)),
        "int8 x int16": (lambda: ops.int_matmul(a8, w16.T, b_bits=16)),
        "uint8 x int16": (lambda: ops.int_matmul(u8, w16.T, b_bits=16)),
        "int16 x int16": (lambda: ops.int_matmul(a16, w16.T, b_bits=16)),
        "int32 x int32": (lambda: ops.int_matmul(w16, w16.T)),
        "conv2d": (lambda: ops.conv2d(x, w, 1, w_bits=16)),
        "conv2d_weight": (lambda: ops.conv2d_weight(x, g, 3, 1)),
        "max_pool + unpool": (lambda: pool_and_route(p)),
        "avg_pool": (lambda: ops.avg_pool2d(p, 2, rounding="round")),
        "rounding": (lambda: ops.saturate(ops.shift_round(p, 3) + ops.div_round(p, 7) + ops.div_trunc(p, 4), 8)),
    }


@pytest.mark.parametrize("name", list(kernel_cases()))
def test_kernels_compile_fullgraph(name):
    fn = kernel_cases()[name]
    expected = fn()
    out = torch.compile(fn, backend="eager", fullgraph=True)()
    assert out.dtype == expected.dtype and torch.equal(out, expected)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(kernel_cases()))
def test_inductor_kernels_bit_identical(name):
    fn = kernel_cases()[name]
    expected = fn()
    out = torch.compile(fn, fullgraph=True, dynamic=False)()
    assert out.dtype == expected.dtype and torch.equal(out, expected)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["IntLinear", "IntLinear-uint8", "IntConv2d", "Sequential"])
def test_inductor_modules_bit_identical(name):
    factory, x = MODULES[name]
    module = factory().eval()
    expected = module(x)
    out = torch.compile(module, fullgraph=True, dynamic=False)(x)
    assert out.dtype == expected.dtype and torch.equal(out, expected)
