"""The purity audit itself: it records every aten op and raises, naming op and dtypes, at the first float one."""

from __future__ import annotations

import pytest
import torch

from torch_intnn.audit import FloatOpError, IntegerOnly, OpRecord, OpRecorder
from torch_intnn.nn import IntConv2d, IntLinear
from torch_intnn.ops import int_matmul


def test_recorder_lists_ops_with_dtypes():
    a = torch.ones(3, 4, dtype=torch.int8)
    with OpRecorder() as rec:
        int_matmul(a, a.T, backend="int_mm")
        torch.ones(2) * 2.0
    assert "_int_mm" in rec.ops and "mul" in rec.ops
    mm = next(r for r in rec.records if r.op == "_int_mm")
    assert mm.input_dtypes == ("int8", "int8") and mm.output_dtypes == ("int32",) and not mm.is_float
    assert [r.op for r in rec.float_ops] == ["ones", "mul"]
    assert all(r.is_float for r in rec.float_ops)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.complex64])
def test_integer_only_raises_naming_op_and_dtypes(dtype):
    x = torch.ones(3, dtype=torch.int32)
    f = torch.ones(3, dtype=dtype)
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(FloatOpError, match=rf"aten\.add .*'int32', '{name}'.*\['{name}'\]"):
        with IntegerOnly():
            x + f


def test_integer_only_catches_hidden_conversions():
    x = torch.arange(6, dtype=torch.int32)
    with pytest.raises(FloatOpError, match=r"aten\._to_copy.*outputs \['float32'\]"):
        with IntegerOnly():
            x.float()
    with pytest.raises(FloatOpError, match=r"aten\.div"):
        with IntegerOnly():
            x / 2  # true division promotes integers to float


def test_integer_layers_pass():
    g = torch.Generator().manual_seed(0)
    lin, conv = IntLinear(30, 7, generator=g), IntConv2d(3, 4, 3, 1, bias=True, generator=g)
    x = torch.randint(-128, 128, (2, 30), generator=g).to(torch.int8)
    img = torch.randint(0, 256, (2, 3, 6, 6), generator=g).to(torch.uint8)
    with IntegerOnly() as audit:
        lin(x)
        conv(img)
        conv.weight_grad(torch.ones(2, 4, 6, 6, dtype=torch.int8))
    assert audit.records and audit.float_ops == []


def test_op_record_flags():
    assert OpRecord("add", ("int32",), ("float32",)).is_float
    assert not OpRecord("add", ("int32", "int64"), ("int64",)).is_float
