"""The ``backend=`` argument reaches every product of the kernels, the layers and the NITRO-D heads: the same
result on every backend, computed by the GEMM asked for."""

import pytest
import torch

from torch_intnn.audit import OpRecorder
from torch_intnn.nn import IntConv2d, IntLinear
from torch_intnn.nn.nitro_blocks import NitroConvBlock, NitroHead, NitroLinearBlock
from torch_intnn.ops import Backend, conv2d, conv2d_weight, madd16


def _gemms(fn) -> set[str]:
    with OpRecorder() as rec:
        out = fn()
    return out, {r.op for r in rec.records} & {"_int_mm", "mm", "madd16_mm"}, \
        {r.input_dtypes for r in rec.records if r.op == "mm"}


def _check(make, run):
    """``run(make(backend))`` for each backend: equal results, each through its own GEMM."""
    outs = {}
    for backend in ("int_mm", "int32", "plain") + (("madd16",) if madd16.available() else ()):
        out, gemms, mm_dtypes = _gemms(lambda: run(make(backend)))
        outs[backend] = out
        if backend in ("int_mm", "madd16"):
            assert gemms == {"_int_mm" if backend == "int_mm" else "madd16_mm"}, (backend, gemms)
        else:
            dtype = "int32" if backend == "int32" else "int64"
            assert gemms == {"mm"} and all(d[0] == dtype for d in mm_dtypes), (backend, mm_dtypes)
    assert all(torch.equal(out, outs["plain"]) for out in outs.values())


def _gen():
    return torch.Generator().manual_seed(0)


X8 = torch.randint(-128, 128, (32, 3, 12, 12), generator=_gen(), dtype=torch.int8)


def test_linear_and_conv_layers_use_their_backend():
    x = X8.flatten(1)
    _check(lambda b: IntLinear(x.shape[1], 64, generator=_gen(), backend=b), lambda layer: layer(x))
    _check(lambda b: IntConv2d(3, 16, 3, 1, generator=_gen(), backend=b), lambda layer: layer(X8))
    assert "backend=int32" in repr(IntLinear(4, 2, backend="int32")) and "backend" not in repr(IntLinear(4, 2))
    with pytest.raises(ValueError):
        IntLinear(4, 2, backend="cublas")


def test_conv_kernels_use_their_backend():
    w = torch.randint(-300, 300, (16, 3, 3, 3), generator=_gen(), dtype=torch.int32)
    g = torch.randint(-128, 128, (32, 16, 12, 12), generator=_gen(), dtype=torch.int8)
    _check(lambda b: b, lambda b: conv2d(X8, w, 1, w_bits=10, backend=b))
    _check(lambda b: b, lambda b: conv2d_weight(X8, g, 3, 1, backend=b))


@pytest.mark.parametrize("make,x", [
    (lambda b: NitroLinearBlock(432, 64, generator=_gen(), backend=b), X8.flatten(1)),
    (lambda b: NitroConvBlock(3, 16, (12, 12), generator=_gen(), backend=b), X8),
    (lambda b: NitroHead((3, 12, 12), 10, d_max=64, generator=_gen(), backend=b), X8),
])
def test_nitro_blocks_and_heads_use_their_backend(make, x):
    _check(make, lambda module: module.eval()(x))
    module = make(Backend.INT32)
    linears = [m for m in module.modules() if isinstance(m, (IntLinear, IntConv2d))]
    assert linears and all(m.backend is Backend.INT32 for m in linears)
