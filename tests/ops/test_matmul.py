"""int_matmul against the obviously correct reference: the same product in int64 ``torch.mm``."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_intnn.ops import Limbs, int_matmul, result_dtype, split_int8, split_lhs, split_rhs
from torch_intnn.ops._checks import check_fits, memory_order
from torch_intnn.audit import OpRecorder
from torch_intnn.ops import _native, madd16
from torch_intnn.ops._cpu import has_int8_dot
from torch_intnn.ops.backend import SMALL_PRODUCT, Backend, default_backend, resolve_backend, set_default_backend
from torch_intnn.ops.matmul import _MAX_K, _pad_for_device, cuda_padding

DTYPES = [torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64]
NATURAL_BITS = {torch.int8: 8, torch.uint8: 9, torch.int16: 16, torch.int32: 32, torch.int64: 64}
SHAPES = [(1, 1, 1), (3, 5, 7), (17, 33, 9), (9, 130, 31)]  # none a multiple of 8 throughout
# every CPU backend but plain (the reference), whatever "auto" picks on this machine; madd16 where it runs
GEMMS = ["int_mm", "int32"] + (["madd16"] if madd16.available() else [])


def ref(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.mm(a.to(torch.int64), b.to(torch.int64))


def value_range(dtype: torch.dtype, bits: int | None) -> tuple[int, int]:
    if dtype == torch.uint8:
        return 0, 255
    bits = bits or NATURAL_BITS[dtype]
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def sample(shape, dtype, bits=None, seed=0) -> torch.Tensor:
    """Uniform values over the declared range, with its two extremes planted at fixed places."""
    lo, hi = value_range(dtype, bits)
    g = torch.Generator().manual_seed(seed)
    # torch.randint cannot draw from the full int64 range; cover the middle and plant the extremes
    x = torch.randint(max(lo, -(1 << 62)), min(hi, (1 << 62) - 1) + 1, shape, generator=g, dtype=torch.int64)
    flat = x.view(-1)
    if flat.numel():
        flat[0], flat[-1] = lo, hi
        flat[flat.numel() // 2] = lo
    return x.to(dtype)


def pairs_with_bits():
    """(dtype, declared bits) choices: each dtype at its natural width and at narrower declared widths."""
    out = []
    for dt in DTYPES:
        out.append((dt, None))
        for bits in (3, 8, 12, 16, 24, 40):
            if dt != torch.uint8 and bits < NATURAL_BITS[dt]:
                out.append((dt, bits))
    return out


@pytest.mark.parametrize("backend", GEMMS)
@pytest.mark.parametrize("a_spec,b_spec", list(itertools.product(pairs_with_bits(), repeat=2)),
                         ids=lambda s: f"{str(s[0])[6:]}/{s[1]}")
def test_every_dtype_pair_matches_int64(a_spec, b_spec, backend):
    (da, ab), (db, bb) = a_spec, b_spec
    for i, (m, k, n) in enumerate(SHAPES[:3]):
        a, b = sample((m, k), da, ab, seed=i), sample((k, n), db, bb, seed=10 + i)
        out = int_matmul(a, b, a_bits=ab, b_bits=bb, backend=backend)
        a_w = NATURAL_BITS[da] if da == torch.uint8 else ab or NATURAL_BITS[da]
        assert out.dtype == result_dtype(k, a_w, bb or NATURAL_BITS[db])
        assert out.is_contiguous() and out.shape == (m, n)
        assert torch.equal(out.to(torch.int64), ref(a, b))


@pytest.mark.parametrize("backend", GEMMS)
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_layouts_and_views(m, k, n, backend):
    """Column-major operands (a module's weight.T), strided slices and a Limbs split once all agree."""
    a = sample((m, 2 * k), torch.int16, seed=1)[:, ::2]  # a strided view
    w = sample((n, k), torch.int32, 16, seed=2)  # (out, in), as IntLinear stores it
    expected = ref(a, w.T)
    for x in (a, a.contiguous(), a.T.contiguous().T, split_lhs(a)):
        for y in (w.T, w.T.contiguous(), split_rhs(w.T, 16)):
            out = int_matmul(x, y, b_bits=16, backend=backend)
            assert torch.equal(out.to(torch.int64), expected)


@pytest.mark.parametrize("backend", GEMMS)
def test_extremes_of_every_width(backend):
    """All-minimum operands give the largest positive sums: the result dtype boundary is exact."""
    for (da, ab), (db, bb) in [((torch.int8, None), (torch.int8, None)), ((torch.int8, None), (torch.int32, 16)),
                               ((torch.int16, None), (torch.int16, None)), ((torch.int32, None), (torch.int32, None)),
                               ((torch.int32, 12), (torch.int64, 20)), ((torch.uint8, None), (torch.int16, None))]:
        lo_a, hi_a = value_range(da, ab)
        lo_b, hi_b = value_range(db, bb)
        for k in (1, 7, 131):
            for va, vb in ((lo_a, lo_b), (lo_a, hi_b), (hi_a, lo_b), (hi_a, hi_b)):
                a = torch.full((3, k), va, dtype=da)
                b = torch.full((k, 5), vb, dtype=db)
                out = int_matmul(a, b, a_bits=ab, b_bits=bb, backend=backend).to(torch.int64)
                assert torch.equal(out, ref(a, b))
                if abs(k * va * vb) < 2**63:  # else int64 arithmetic wraps, and so does the result
                    assert torch.equal(out, torch.full((3, 5), k * va * vb, dtype=torch.int64))


def test_int32_result_exactly_at_the_bound():
    # 8-bit x 8-bit: K * 2**14 < 2**31 holds up to K = 131071, where all-minimum operands sum to 2**31 - 2**14.
    k = 131071
    assert result_dtype(k, 8, 8) == torch.int32 and result_dtype(k + 1, 8, 8) == torch.int64
    a = torch.full((2, k), -128, dtype=torch.int8)
    out = int_matmul(a, a.T)
    assert out.dtype == torch.int32 and int(out[0, 0]) == k * 128 * 128


def test_int64_operands_wrap_like_int64_arithmetic():
    """Full-width int64 products overflow; the result equals torch's (two's-complement) int64 mm."""
    a = torch.tensor([[2**62, -(2**63), 3]], dtype=torch.int64)
    b = torch.tensor([[4], [2**63 - 1], [-(2**40)]], dtype=torch.int64)
    assert torch.equal(int_matmul(a, b), ref(a, b))


@pytest.mark.parametrize("da,ab,db,bb", [(torch.int8, None, torch.int8, None), (torch.int16, None, torch.int8, None),
                                         (torch.int8, 4, torch.int32, 4), (torch.uint8, None, torch.int32, 16)])
@pytest.mark.parametrize("backend", GEMMS)
@pytest.mark.parametrize("m,n", [(2, 3), (3, 2)])  # wide and tall: the int32 backend's long-K layouts
def test_long_reductions_are_chunked(da, ab, db, bb, backend, m, n):
    k = _MAX_K + 6  # two chunks, the second not a multiple of 8
    a, b = sample((m, k), da, ab, seed=3), sample((k, n), db, bb, seed=4)
    out = int_matmul(a, b, a_bits=ab, b_bits=bb, backend=backend)
    assert out.shape == (m, n) and out.is_contiguous() and torch.equal(out.to(torch.int64), ref(a, b))
    # the all-minimum case, whose int8 partial sums would overflow int32 without chunking
    a, b = torch.full((m, k), value_range(da, ab)[0], dtype=da), torch.full((k, n), value_range(db, bb)[0], dtype=db)
    assert torch.equal(int_matmul(a, b, a_bits=ab, b_bits=bb, backend=backend).to(torch.int64), ref(a, b))


@pytest.mark.parametrize("a_bits,b_bits,chunk", [(8, 16, 511), (8, 8, 131071), (12, 12, 511), (9, 20, 15)])
def test_int32_backend_chunks_at_the_bound(a_bits, b_bits, chunk):
    """All-minimum operands: a chunk of ``chunk`` products is the longest whose sum fits int32, and the
    reduction one longer than it (two chunks) is still exact; wide (M <= N) and tall (M > N, multiplied
    transposed) products alike."""
    assert chunk * (1 << (a_bits - 1)) * (1 << (b_bits - 1)) < 2**31
    assert (chunk + 1) * (1 << (a_bits - 1)) * (1 << (b_bits - 1)) >= 2**31
    for k in (chunk, chunk + 1, 3 * chunk + 2):
        for m, n in ((2, 3), (3, 2)):
            a = torch.full((m, k), -(1 << (a_bits - 1)), dtype=torch.int32)
            b = torch.full((k, n), -(1 << (b_bits - 1)), dtype=torch.int32)
            out = int_matmul(a, b, a_bits=a_bits, b_bits=b_bits, backend="int32")
            assert out.is_contiguous() and torch.equal(out.to(torch.int64), ref(a, b))


def test_the_cli_sets_the_default_backend_from_the_environment_variable(monkeypatch):
    from torch_intnn.cli import GEMM_ENV, main

    detected = default_backend("cpu")
    other = Backend.INT32 if detected is Backend.INT_MM else Backend.INT_MM  # not what this CPU would pick
    try:
        monkeypatch.setenv(GEMM_ENV, other.value)
        main(["models"])
        assert default_backend("cpu") is other and default_backend("cuda") is Backend.INT_MM
        monkeypatch.setenv(GEMM_ENV, "auto")
        main(["models"])
        assert default_backend("cpu") is detected
        monkeypatch.setenv(GEMM_ENV, "cublas")
        with pytest.raises(SystemExit, match="TORCH_INTNN_GEMM='cublas'"):
            main(["models"])
    finally:
        set_default_backend(None)


def test_library_code_reads_no_environment_variable():
    code = "from torch_intnn.ops import default_backend as d; print(d('cpu').value)"
    detected = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    env = {**os.environ, "TORCH_INTNN_GEMM": "plain"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout == detected


def test_set_default_backend_changes_auto_and_refuses_what_cannot_run():
    a, b = sample((40, 300), torch.int8, seed=1), sample((300, 50), torch.int16, seed=2)  # 600,000 products
    try:
        for backend in ("plain", Backend.INT32, "int_mm"):
            set_default_backend(backend)
            assert default_backend("cpu") is Backend(backend)
            assert torch.equal(int_matmul(a, b).to(torch.int64), ref(a, b))
        with pytest.raises(ValueError, match="CPU only"):
            set_default_backend("int32", "cuda")
        with pytest.raises(ValueError, match="name a backend"):
            set_default_backend("auto")
        with pytest.raises(ValueError, match="unknown backend 'cublas'"):
            set_default_backend("cublas")
    finally:
        set_default_backend(None)
    detected = Backend.INT_MM if has_int8_dot() else Backend.MADD16 if madd16.available() else Backend.INT32
    assert default_backend("cpu") is detected


def test_auto_multiplies_small_products_in_int64_on_cpu():
    small, large = SMALL_PRODUCT, SMALL_PRODUCT + 1
    cpu = torch.device("cpu")
    small_choice = Backend.MADD16 if default_backend("cpu") is Backend.MADD16 else Backend.PLAIN
    assert resolve_backend("auto", cpu, small) is small_choice
    assert resolve_backend("auto", cpu, large) is default_backend("cpu")
    assert resolve_backend("int32", cpu, small) is Backend.INT32
    assert resolve_backend("auto", torch.device("cuda"), small) is Backend.INT_MM


@pytest.mark.parametrize("m,k,n", [(0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0)])
def test_empty_shapes(m, k, n):
    a, b = torch.zeros(m, k, dtype=torch.int16), torch.zeros(k, n, dtype=torch.int32)
    out = int_matmul(a, b, b_bits=16)
    assert out.shape == (m, n) and torch.equal(out.to(torch.int64), torch.zeros(m, n, dtype=torch.int64))
    assert torch.equal(int_matmul(a, b, backend="plain"), ref(a, b))


@pytest.mark.parametrize("backend", ["plain", *GEMMS])
def test_every_backend_agrees_with_auto(backend):
    a, b = sample((9, 40), torch.int16, seed=5), sample((40, 11), torch.int32, 20, seed=6)
    auto = int_matmul(a, b, b_bits=20)
    for out in (int_matmul(a, b, b_bits=20, backend=backend), int_matmul(split_lhs(a), split_rhs(b, 20), backend=backend)):
        assert out.dtype == auto.dtype and torch.equal(out, auto)


@pytest.mark.parametrize("dtype,bits", [(d, b) for d, b in pairs_with_bits()])
def test_split_int8_rebuilds_the_values(dtype, bits):
    x = sample((6, 13), dtype, bits, seed=7)
    width = NATURAL_BITS[dtype] if bits is None else bits
    limbs, offset = split_int8(x, width)
    assert all(limb.dtype == torch.int8 and limb.shape == x.shape for limb in limbs)
    rebuilt = sum(limb.to(torch.int64) << (8 * i) for i, limb in enumerate(limbs)) + offset
    if dtype != torch.int64 or width < 64:
        assert torch.equal(rebuilt, x.to(torch.int64))
    assert len(limbs) == (1 if dtype == torch.uint8 else -(-width // 8))
    side = split_rhs(x, bits)
    assert isinstance(side, Limbs) and side.shape == x.shape and torch.equal(side.to_int64(), x.to(torch.int64))


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(0, 20), k=st.integers(0, 70), n=st.integers(0, 20),
    a_spec=st.sampled_from(pairs_with_bits()), b_spec=st.sampled_from(pairs_with_bits()),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_matches_int64(m, k, n, a_spec, b_spec, seed):
    (da, ab), (db, bb) = a_spec, b_spec
    a, b = sample((m, k), da, ab, seed), sample((k, n), db, bb, seed + 1)
    for backend in GEMMS:
        assert torch.equal(int_matmul(a, b, a_bits=ab, b_bits=bb, backend=backend).to(torch.int64), ref(a, b))


# --- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.bool])
def test_non_integer_operands_raise_type_error_naming_the_dtype(dtype):
    good = torch.ones(3, 3, dtype=torch.int8)
    bad = torch.ones(3, 3, dtype=dtype)
    with pytest.raises(TypeError, match=str(dtype)):
        int_matmul(bad, good)
    with pytest.raises(TypeError, match=str(dtype)):
        int_matmul(good, bad)
    with pytest.raises(TypeError, match="list"):
        int_matmul([[1]], good)


def test_wrong_ranks_and_sizes_raise_value_error():
    a = torch.ones(3, 4, dtype=torch.int8)
    with pytest.raises(ValueError, match="2-D"):
        int_matmul(a[0], a.T)
    with pytest.raises(ValueError, match="2-D"):
        int_matmul(a, a.T[None])
    with pytest.raises(ValueError, match="inner sizes"):
        int_matmul(a, a)
    with pytest.raises(ValueError, match="split_lhs"):
        int_matmul(split_rhs(a), a.T)
    with pytest.raises(ValueError, match="backend"):
        int_matmul(a, a.T, backend="cublas")


def test_values_outside_the_declared_width_raise_value_error():
    b = torch.tensor([[1], [40000]], dtype=torch.int64)
    with pytest.raises(ValueError, match=r"16-bit range \[-32768, 32767\]"):
        int_matmul(torch.ones(1, 2, dtype=torch.int8), b, b_bits=16)
    with pytest.raises(ValueError, match="declared 8-bit"):
        int_matmul(torch.tensor([[-129]], dtype=torch.int32), torch.ones(1, 1, dtype=torch.int8), a_bits=8)
    with pytest.raises(ValueError, match="2..64"):
        int_matmul(b.T, b, a_bits=1)
    with pytest.raises(ValueError, match="16-bit"):
        split_rhs(b, 16)


@pytest.mark.parametrize(
    "layout",
    [(lambda t: t, True), (lambda t: t.contiguous(memory_format=torch.channels_last), True),
     (lambda t: t.transpose(1, 3), True), (lambda t: t[:, :, ::2], False)],
    ids=["contiguous", "channels_last", "transposed", "strided"],
)
def test_memory_order_holds_the_same_elements(layout):
    """Whole-tensor reductions on memory_order(t) equal those on t, whatever the layout (the range check and
    the NITRO-D value widths read it)."""
    make, dense = layout
    t = make(torch.arange(2 * 3 * 4 * 5, dtype=torch.int32).view(2, 3, 4, 5) - 77)
    ordered = memory_order(t)
    assert torch.equal(ordered.reshape(-1).sort().values, t.reshape(-1).sort().values)
    assert (ordered.dim() == 1) == dense and ordered.data_ptr() == t.data_ptr()  # a view, never a copy
    lo, hi = int(t.min()), int(t.max())
    with pytest.raises(ValueError, match=rf"values span \[{lo}, {hi}\]"):
        check_fits(t, 6, "x")


# --- the CUDA shape rule, exercised without a GPU -----------------------------------------------------------


def test_cuda_padding_rule():
    assert cuda_padding(17, 8, 8) == (0, 0, 0)
    assert cuda_padding(16, 8, 8) == (1, 0, 0)
    assert cuda_padding(1, 9, 15) == (16, 7, 1)
    assert cuda_padding(300, 784, 2049) == (0, 0, 7)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (5, 9, 15), (17, 784, 2049), (40, 16, 8)])
def test_pad_for_device_on_meta_and_cpu(m, k, n):
    a, b = torch.empty(m, k, dtype=torch.int8, device="meta"), torch.empty(k, n, dtype=torch.int8, device="meta")
    pa, pb = _pad_for_device(a, b, device_type="cuda")
    pm, pk, pn = cuda_padding(m, k, n)
    assert pa.shape == (m + pm, k + pk) and pb.shape == (k + pk, n + pn)
    assert pa.shape[0] > 16 and pa.shape[1] % 8 == 0 and pb.shape[1] % 8 == 0
    assert _pad_for_device(a, b) == (a, b)  # meta and CPU tensors are left alone by default
    # on real values: the zero padding adds nothing, the top-left block is the product
    a, b = sample((m, k), torch.int8, seed=8), sample((k, n), torch.int8, seed=9)
    pa, pb = _pad_for_device(a, b, device_type="cuda")
    assert torch.equal(torch._int_mm(pa, pb)[:m, :n].to(torch.int64), ref(a, b))


def _strided_copy(x: torch.Tensor, strides: tuple[int, int]) -> torch.Tensor | None:
    """``x``'s values in a buffer with the given strides, or None if those strides would overlap."""
    (r, c), (s0, s1) = x.shape, strides
    if len({i * s0 + j * s1 for i in range(r) for j in range(c)}) < r * c:
        return None
    y = torch.zeros((r - 1) * s0 + (c - 1) * s1 + 1, dtype=x.dtype).as_strided((r, c), strides)
    return y.copy_(x)


def test_size_one_dimensions_with_arbitrary_strides():
    """A dimension of size 1 may carry any stride (``g.T`` for g (N, 1) has strides (1, 1)); torch._int_mm reads
    it as a leading dimension and returned garbage on such operands, so int_matmul must hand it valid ones."""
    checked = 0
    for m, k, n in itertools.product((1, 2, 5), repeat=3):
        a, b = sample((m, k), torch.int8, seed=m * 9 + k), sample((k, n), torch.int8, seed=n)
        expected = ref(a, b)
        for sa, sb in itertools.product(itertools.product((1, 2, 7), repeat=2), repeat=2):
            a_s, b_s = _strided_copy(a, sa), _strided_copy(b, sb)
            if a_s is not None and b_s is not None:
                assert torch.equal(int_matmul(a_s, b_s).to(torch.int64), expected), (m, k, n, sa, sb)
                checked += 1
    assert checked > 500


# --- the madd16 kernel ---------------------------------------------------------------------------------------

needs_madd16 = pytest.mark.skipif(not madd16.available(), reason="madd16 needs an x86 CPU with AVX2 and a C compiler")


@needs_madd16
@pytest.mark.parametrize("a_bits,b_bits", [(8, 16), (11, 8), (12, 12), (16, 15), (8, 8), (2, 16)])
def test_madd16_blocks_hold_as_many_products_as_fit_int32(a_bits, b_bits):
    """All-minimum operands put every K block's int32 partial sum at its bound; K one short of, at and past a
    block, over several blocks, odd; tall and wide; the blocks added in int32 or int64 as the result dtype says."""
    terms = ((1 << 31) - 1) // ((1 << (a_bits - 1)) * (1 << (b_bits - 1)))
    block = min(madd16.MAX_BLOCK, terms - terms % 2)
    for k in (1, block - 1, block, block + 1, 3 * block + 3):
        for m, n in ((7, 17), (17, 7), (1, 33)):
            a = torch.full((m, k), -(1 << (a_bits - 1)), dtype=torch.int32)
            b = torch.full((k, n), -(1 << (b_bits - 1)), dtype=torch.int32)
            out = int_matmul(a, b, a_bits=a_bits, b_bits=b_bits, backend="madd16")
            assert out.dtype == result_dtype(k, a_bits, b_bits) and torch.equal(out.to(torch.int64), ref(a, b))


@needs_madd16
@pytest.mark.parametrize("a_bits,b_bits", [(16, 16), (32, 8), (20, 16), (32, 32), (17, 3)])
def test_madd16_cuts_wide_operands_into_digits(a_bits, b_bits):
    """Operands of 16 to 32 bits go through the kernel as 15-bit digits; extremes and random values alike."""
    for k in (1, 5, 513):
        a = sample((9, k), torch.int32, a_bits, seed=k)
        b = sample((k, 11), torch.int32, b_bits, seed=k + 1)
        for x, y in ((a, b), (torch.full_like(a, -(1 << (a_bits - 1))), torch.full_like(b, -(1 << (b_bits - 1))))):
            with OpRecorder() as rec:
                out = int_matmul(x, y, a_bits=a_bits, b_bits=b_bits, backend="madd16")
            assert "madd16_mm" in rec.ops and "mm" not in rec.ops
            assert out.dtype == result_dtype(k, a_bits, b_bits) and torch.equal(out.to(torch.int64), ref(x, y))


@needs_madd16
def test_madd16_leaves_operands_wider_than_32_bits_to_int32():
    a, b = sample((9, 40), torch.int64, 40, seed=5), sample((40, 11), torch.int8, seed=6)
    with OpRecorder() as rec:
        out = int_matmul(a, b, a_bits=40, backend="madd16")
    assert "madd16_mm" not in rec.ops and "mm" in rec.ops and torch.equal(out, ref(a, b))


@needs_madd16
def test_madd16_threads_and_compiled_graphs_give_the_same_product():
    a, b = sample((300, 301), torch.int8, seed=7), sample((301, 100), torch.int16, 12, seed=8)  # 9 M products
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = int_matmul(a, b, b_bits=12, backend="madd16")
        torch.set_num_threads(2)
        two = int_matmul(a, b, b_bits=12, backend="madd16")
    finally:
        torch.set_num_threads(threads)
    compiled = torch.compile(lambda x, y: int_matmul(x, y, b_bits=12, backend="madd16"), fullgraph=True)(a, b)
    assert torch.equal(one, ref(a, b).to(one.dtype)) and torch.equal(two, one) and torch.equal(compiled, one)


@needs_madd16
def test_madd16_refuses_what_it_cannot_multiply():
    a = torch.ones(3, 4, dtype=torch.int8)
    with pytest.raises(ValueError, match="do not multiply"):
        madd16.madd16_mm(a, a, False)
    with pytest.raises(ValueError, match="int8, uint8, int16 or int32"):
        madd16.madd16_mm(a.long(), a.T, False)
    with pytest.raises(ValueError, match="CPU only"):
        resolve_backend("madd16", torch.device("cuda"), 10**9)
    with pytest.raises(ValueError, match="CPU only"):
        set_default_backend("madd16", "cuda")


@needs_madd16
def test_madd16_builds_its_kernel_on_first_use_in_a_fresh_temporary_directory(tmp_path):
    code = ("from torch_intnn.ops import default_backend, int_matmul; import torch; "
            "a = torch.full((3, 600), -128, dtype=torch.int8); "
            "print(default_backend('cpu').value, int(int_matmul(a, a.T, backend='madd16')[0, 0]))")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["madd16" if not has_int8_dot() else "int_mm", str(600 * 128 * 128)]
    built = sorted(p.name.split("-")[0] + p.suffix for p in (tmp_path / f"torch_intnn_{os.getuid()}").iterdir())
    assert built == ["fused.so", "madd16.so"]


@needs_madd16
def test_madd16_without_a_compiler_or_with_a_failing_build_warns_and_is_unavailable(monkeypatch, tmp_path):
    try:
        monkeypatch.setattr(_native, "compiler", lambda: None)
        madd16._kernel.cache_clear()
        with pytest.warns(RuntimeWarning, match="no C compiler"):
            assert not madd16.available()
        monkeypatch.undo()
        monkeypatch.setattr(madd16, "_FLAGS", [*madd16._FLAGS, "-no-such-flag"])
        monkeypatch.setattr(_native.tempfile, "gettempdir", lambda: str(tmp_path))
        madd16._kernel.cache_clear()
        with pytest.warns(RuntimeWarning, match="compiling madd16.c failed"):
            assert not madd16.available()
    finally:
        monkeypatch.undo()
        madd16._kernel.cache_clear()
    assert madd16.available()
