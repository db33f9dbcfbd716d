"""A one-layer integer model and delta rule, registered for the Lightning tests (fast, independent of the papers)."""

import os
import signal

import lightning.pytorch as pl
import torch
from torch import nn

from torch_intnn.learning import IntegerSGD, LearningRule, register_rule
from torch_intnn.models import list_models, register_model
from torch_intnn.nn import IntFlatten, IntLinear
from torch_intnn.ops import div_round, saturate


class ToyNet(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.flat = IntFlatten()
        self.fc = IntLinear(784, 10, generator=torch.Generator().manual_seed(seed))

    def forward(self, x):
        x = (x.to(torch.int16) - 128).to(torch.int8)
        return self.fc(self.flat(x))


class ToyRule(LearningRule):
    """z = W x; e = saturate(z / 2**10) - 32 * onehot; G = e^T x."""

    def __init__(self, model, seed: int = 0, lr_inv: int = 2**15, z_div: int = 2**14) -> None:
        super().__init__(model, seed, lr_inv)
        self.z_div = z_div

    def configure_optimizer(self):
        fc = self.model.fc
        return IntegerSGD([fc.weight, fc.bias], lr_inv=self.lr_inv, rounding="round")

    def _step(self, x, y, optimizer):
        z = self.model(x)
        out = saturate(div_round(z, self.z_div), 8)
        target = torch.nn.functional.one_hot(y, 10).to(out.dtype) * 32
        e = out - target
        fc = self.model.fc
        g = e.T.to(torch.int64) @ fc.input.to(torch.int64)
        optimizer.set_grad(fc.weight, g)
        optimizer.set_grad(fc.bias, e.sum(0))
        self.steps += 1
        return {"loss": (e.to(torch.int64) ** 2).sum(), "correct": (out.argmax(1) == y).sum()}


if "toy_linear" not in list_models():
    register_model("toy_linear", kind="integer", rule="toy", dataset="mnist", input_shape=(1, 28, 28),
                   num_classes=10, test_only=True)(lambda seed=0: ToyNet(seed))
    register_rule("toy")(ToyRule)
    register_model("toy_linear_b", kind="integer", rule="toy", dataset="mnist", input_shape=(1, 28, 28),
                   num_classes=10, test_only=True)(lambda seed=0: ToyNet(seed))


class KillAtTest(pl.Callback):
    """Kills its own process with SIGKILL when the test set is first evaluated (the end of ``intnn fit``)."""

    def on_test_start(self, trainer, pl_module):
        os.kill(os.getpid(), signal.SIGKILL)
