"""The integer-purity audit: which aten ops ran, on which dtypes, and did any touch a floating-point tensor.

    with IntegerOnly():          # raises FloatOpError at the first op with a float input or output
        learner.step(x, y)

    with OpRecorder() as rec:    # records everything; rec.float_ops lists the offenders
        model(x)

Both work through a ``TorchDispatchMode``, so they see every aten op dispatched below the Python API
(including those inside ``int_matmul``), not just the module calls. ``torch.compile`` refuses to trace under
such a mode; for a compiled function, :func:`integer_only_backend` checks instead the ATen graph that Inductor
would compile (every node's value, from the tracing fake tensors):

    torch.compile(fn, fullgraph=True, backend=integer_only_backend())(*args)   # raises FloatOpError
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["FloatOpError", "OpRecord", "OpRecorder", "IntegerOnly", "integer_only_backend"]


class FloatOpError(RuntimeError):
    """An aten op read or wrote a floating-point (or complex) tensor inside an integer-only region."""


@dataclass(frozen=True)
class OpRecord:
    op: str
    input_dtypes: tuple[str, ...]
    output_dtypes: tuple[str, ...]

    @property
    def is_float(self) -> bool:
        return any(_is_float_name(d) for d in self.input_dtypes + self.output_dtypes)


def _is_float_name(name: str) -> bool:
    return any(k in name for k in ("float", "half", "bfloat", "complex", "double"))


def _dtypes(tree) -> tuple[str, ...]:
    leaves, _ = tree_flatten(tree)
    return tuple(str(x.dtype).removeprefix("torch.") for x in leaves if isinstance(x, torch.Tensor))


class OpRecorder(TorchDispatchMode):
    """Records an :class:`OpRecord` for every aten op executed while active (``self.records``)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[OpRecord] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self._record(OpRecord(str(func.overloadpacket.__name__), _dtypes((args, kwargs)), _dtypes(out)))
        return out

    def _record(self, rec: OpRecord) -> None:
        self.records.append(rec)

    @property
    def float_ops(self) -> list[OpRecord]:
        return [r for r in self.records if r.is_float]

    @property
    def ops(self) -> set[str]:
        return {r.op for r in self.records}


class IntegerOnly(OpRecorder):
    """Like :class:`OpRecorder`, but raises :class:`FloatOpError` at the first float op, naming it and its dtypes."""

    def _record(self, rec: OpRecord) -> None:
        super()._record(rec)
        if rec.is_float:
            raise FloatOpError(
                f"floating-point tensor op in an integer-only region: aten.{rec.op} "
                f"(inputs {list(rec.input_dtypes)}, outputs {list(rec.output_dtypes)})"
            )


def integer_only_backend(record: list[str] | None = None):
    """A ``torch.compile`` backend that lowers to the ATen graph (as Inductor does), raises
    :class:`FloatOpError` if any node takes or yields a floating-point tensor, and then runs the graph eagerly.
    The ATen op names of every graph are appended to ``record`` if given."""
    from torch._dynamo.backends.common import aot_autograd

    def check(gm: torch.fx.GraphModule, example_inputs):
        for node in gm.graph.nodes:
            values, _ = tree_flatten(node.meta.get("val"))
            for arg in node.all_input_nodes:
                values += tree_flatten(arg.meta.get("val"))[0]
            dtypes = [str(v.dtype) for v in values if isinstance(v, torch.Tensor)]
            if node.op == "call_function" and record is not None:
                record.append(str(node.target))
            if any(_is_float_name(d) for d in dtypes):
                raise FloatOpError(f"compiled graph: {node.format_node()} touches {', '.join(sorted(set(dtypes)))}")
        return gm

    return aot_autograd(fw_compiler=check)
