"""What a learning rule is: the object that replaces ``loss.backward()`` for an integer model.

    model = create_model("pocketnn_mlp_mnist", seed=0)
    rule = create_rule("dfa", model, seed=0)                    # feedback matrices etc. are buffers of `rule`
    opt = rule.configure_optimizer()                            # an IntegerSGD over the model's buffers
    for x, y in loader:                                         # x: raw uint8 images (N, C, H, W), y: int64 labels
        stats = rule.step(x, y, opt)                            # forward in training mode + integer gradients
        opt.step()                                              # the update (Lightning counts this call)

``rule.train_step(x, y, opt)`` does both; after ``rule.compile_step()`` it runs them as one ``torch.compile``'d
graph (Inductor: the element-wise work of the forward pass, the gradients and the update fused into a few
loops around the ``_int_mm`` calls), bit-identical to the eager pair.

``rule.step`` returns integer tensors only (``loss``: the rule's integer loss summed over the batch, ``correct``:
the number of right predictions on the pre-update outputs, plus rule-specific counters such as ``saturated``);
turning them into floats for logging is the caller's business, outside the integer step.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import shutil
import types
import warnings
from typing import Callable

import torch
from torch import nn

from torch_intnn.learning.sgd import IntegerSGD, apply_update
from torch_intnn.nn._draws import counter_generator
from torch_intnn.ops._checks import check_int_arg, check_integer

__all__ = ["LearningRule", "RuleFactory", "build_rule", "check_batch", "register_rule", "create_rule", "list_rules",
           "rule_config", "rule_name"]


def check_batch(x: torch.Tensor, y: torch.Tensor, num_classes: int = 10) -> None:
    """Refuse a training batch before it can change anything: float or empty images, labels that are not
    int64 class indices in ``[0, num_classes)``, or counts that differ. Raises ``TypeError`` / ``ValueError``."""
    check_integer(x, "training images")
    if y.dtype != torch.int64:
        raise TypeError(f"labels must be int64 class indices, got dtype {y.dtype}")
    if x.dim() < 2 or len(x) == 0:
        raise ValueError(f"empty or malformed batch: images of shape {tuple(x.shape)}; expected (N, C, H, W), N > 0")
    if y.dim() != 1 or len(y) != len(x):
        raise ValueError(f"{len(x)} images but labels of shape {tuple(y.shape)}; expected ({len(x)},)")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got values in [{lo}, {hi}]")


class LearningRule(nn.Module):
    """Base class. Subclasses create all their state (feedback matrices, counters) as buffers in ``__init__``.

    The model is held by reference, not as a submodule, so ``rule.state_dict()`` holds only the rule's own
    state and ``model.state_dict()`` only the model's.

    What every rule shares:

    * ``seed`` and the ``steps`` buffer (int64, saved): :meth:`step_generator` seeds each step's randomness from
      the pair (:func:`~torch_intnn.nn._draws.counter_generator`), and the rule's :meth:`prepare` advances it;
    * the learning-rate schedule: :meth:`lr_inv_at` gives an epoch's divisor from the initial ``lr_inv``
      (``lr_milestones`` counted by :meth:`milestones_passed`), and :meth:`apply_schedule` writes it into every
      param group, at each epoch start and whenever the rule's schedule state changes. Recomputed, never
      accumulated, so a resumed run (even one resumed mid-epoch) gets the same divisor.
    """

    lr_milestones: tuple[int, ...] = ()
    loss_unit: int = 1  # the integer loss counts this many per unit it is logged in (DFA: 16 per nat)

    def __init__(self, model: nn.Module, seed: int = 0, lr_inv: int = 512) -> None:
        super().__init__()
        name = type(self).__name__
        check_int_arg(f"{name} seed", seed)
        check_int_arg(f"{name} lr_inv", lr_inv, 1)
        object.__setattr__(self, "_model", model)
        self._compiled: Callable | None = None
        self.seed, self.lr_inv = seed, lr_inv
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))  # seeds each step's randomness

    def step_generator(self) -> torch.Generator:
        """The generator of this step's randomness (augmentation, dropout), from (seed, step counter) alone."""
        return counter_generator(self.seed, int(self.steps))

    def milestones_passed(self, epoch: int) -> int:
        """How many of ``lr_milestones`` (epochs counted from 0) are at or before ``epoch``."""
        return sum(1 for m in self.lr_milestones if m <= epoch)

    def lr_inv_at(self, epoch: int) -> int:
        """The learning-rate divisor of ``epoch`` (from 0). Default: the initial ``lr_inv``, constant."""
        return self.lr_inv

    def apply_schedule(self, epoch: int, optimizer: IntegerSGD) -> None:
        """Set every param group's ``lr_inv`` to :meth:`lr_inv_at` ``(epoch)`` (idempotent)."""
        lr_inv = self.lr_inv_at(epoch)
        for group in optimizer.param_groups:
            group["lr_inv"] = lr_inv

    @property
    def model(self) -> nn.Module:
        return self._model

    def configure_optimizer(self) -> IntegerSGD:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        """Classes the model scores; labels must lie in ``[0, num_classes)``."""
        return int(getattr(self.model, "num_classes", 10))

    def step(self, x: torch.Tensor, y: torch.Tensor, optimizer: IntegerSGD) -> dict[str, torch.Tensor]:
        """Training-mode forward and integer gradients of one batch, handed to ``optimizer`` (applied by its
        ``step()``). x: (N, C, H, W) raw integer images; y: (N,) int64 labels.

        Raises ``TypeError`` / ``ValueError`` for a bad batch (:func:`check_batch`) or optimizer settings
        (:meth:`IntegerSGD.check_groups`) before anything changes; if the step itself fails, the step counter
        (which seeds the rule's randomness) and the optimizer's pending gradients are restored, so a failed call
        leaves no trace.
        """
        self._check_step(x, y, optimizer)
        with self._undo_on_error(optimizer):
            return self._step(x, y, optimizer)

    def _step(self, x: torch.Tensor, y: torch.Tensor, optimizer: IntegerSGD) -> dict[str, torch.Tensor]:
        """The rule's step on a checked batch (:meth:`step`)."""
        raise NotImplementedError

    def _check_step(self, x: torch.Tensor, y: torch.Tensor, optimizer: IntegerSGD) -> None:
        check_batch(x, y, self.num_classes)
        optimizer.check_groups()

    @contextlib.contextmanager
    def _undo_on_error(self, optimizer: IntegerSGD):
        saved = self.steps.clone()
        try:
            yield
        except BaseException:
            self.steps.copy_(saved)
            optimizer.zero_grad()
            raise

    def train_step(self, x: torch.Tensor, y: torch.Tensor, optimizer: IntegerSGD) -> dict[str, torch.Tensor]:
        """``stats = step(x, y, optimizer); optimizer.step()``. After :meth:`compile_step`, the same as one
        compiled graph (a strict optimizer takes the eager pair, which can refuse an update before writing).
        The same checks as :meth:`step`, before anything changes."""
        self._check_step(x, y, optimizer)
        if self._compiled is None or optimizer.strict:
            with self._undo_on_error(optimizer):
                stats = self._step(x, y, optimizer)
            optimizer.step()
            return stats
        with self._undo_on_error(optimizer):
            args = self.prepare(x, y)  # host-side: randomness drawn from the step counter, schedule decisions
            stats, saturated = self._compiled(optimizer.fused_plan(), *args)
        optimizer.saturated += saturated
        return stats

    def compile_step(self, backend: str = "inductor", **options) -> None:
        """Run :meth:`train_step` as one ``torch.compile(fullgraph=True)`` graph from now on.

        Needs the rule to split its step into :meth:`prepare` (host side) and :meth:`gradients` (tensor work in
        :meth:`parameters_in_order`). The first call compiles (3 to 40 s with Inductor here, then cached on
        disk); later calls reuse the graph, also across learning-rate changes (divisors enter as tensors).
        Results are bit-identical to the eager step (tests compare them).
        """
        if type(self).gradients is LearningRule.gradients:
            raise NotImplementedError(f"{type(self).__name__} has no compilable step (prepare / gradients)")
        if backend == "inductor" and not _have_cxx():
            warnings.warn("torch_intnn: no C++ compiler (g++, c++, clang++ or $CXX) found, so the training step "
                          "runs eagerly: the same results, slower", RuntimeWarning, stacklevel=2)
            self._compiled = None
            return
        opts = dict(options.pop("options", {}))
        # Dynamo re-checks every module attribute before each call (~0.1 ms, 10 % of a small step); the step
        # only reads settings fixed at construction, so those checks are skipped (call compile_step again after
        # changing a setting of the rule or the model). Argument and tensor checks stay.
        opts.setdefault("guard_filter_fn", torch.compiler.skip_guard_on_all_nn_modules_unsafe)
        if backend == "inductor":
            # Scalar C++ loops: with torch 2.14.1 the vectorised loops of the faithful DFA step died of SIGFPE (an
            # integer division by zero, apparently in a lane that holds no element); on the improved DFA step the
            # scalar loops were as fast (1.69 against 1.61 ms a step).
            opts.setdefault("cpp.simdlen", 0)
        options["options"] = opts
        # Dynamo keeps its compiled graphs on the code object it starts from, and the guards skipped above are
        # what would tell two rules apart: each rule gets a copy of the code object, hence a cache of its own.
        fn = LearningRule._fused_step
        own = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
        self._compiled = torch.compile(types.MethodType(own, self), fullgraph=True, dynamic=False, backend=backend,
                                       **options)

    def prepare(self, x: torch.Tensor, y: torch.Tensor) -> tuple:
        """Host-side part of a step; returns the arguments of :meth:`gradients`."""
        raise NotImplementedError

    def gradients(self, *args) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Tensor part of a step: the gradients (in :meth:`parameters_in_order`) and the step's statistics."""
        raise NotImplementedError

    def parameters_in_order(self) -> list[torch.Tensor]:
        """The parameters the gradients of :meth:`gradients` belong to, in the optimizer's param-group order."""
        raise NotImplementedError

    def _fused_step(self, plan: list[tuple], *args) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        grads, stats = self.gradients(*args)
        counts = [apply_update(entry, g) for entry, g in zip(plan, grads, strict=True)]  # one per parameter
        return stats, torch.stack(counts) if counts else torch.zeros(0, dtype=torch.int64)

    def on_train_epoch_start(self, epoch: int, optimizer: IntegerSGD) -> None:
        """Called at the start of every training epoch (``epoch`` counts from 0): :meth:`apply_schedule`."""
        self.apply_schedule(epoch, optimizer)

    def on_validation_end(self, correct: int, total: int, optimizer: IntegerSGD) -> None:
        """Hook for validation-driven schedules (plateau decay), called after each validation pass during fit
        with the integer count of right predictions. Default: nothing."""

    @property
    def should_stop(self) -> bool:
        """Whether the rule's own early stopping asks training to end (read after each validation pass; the
        Lightning module stops the trainer). Default: never."""
        return False

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Integer class scores (N, num_classes) of the model in its current mode."""
        return self.model(x)


def _have_cxx() -> bool:
    """Whether Inductor's CPU backend finds a C++ compiler."""
    names = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
    return any(name and shutil.which(name) for name in names)


_RULES: dict[str, Callable[..., LearningRule]] = {}


def register_rule(name: str) -> Callable:
    def wrap(cls):
        _RULES[name] = cls
        return cls

    return wrap


RuleFactory = Callable[[nn.Module], LearningRule]  # a recipe's rule: class_path and typed init_args, model to come


def build_rule(rule: str | dict | RuleFactory, model: nn.Module, seed: int, rule_args: dict | None = None
               ) -> LearningRule:
    """The learning rule for ``model``, with the given ``seed``, from any of the forms a module takes:

    * a registered name with keyword arguments (:func:`create_rule`; ``rule_args``);
    * a config ``{"class_path": "torch_intnn.learning.DFA", "init_args": {...}}``, as a recipe writes it;
    * a factory called as ``factory(model, seed=seed)``: what LightningCLI hands over for a recipe's
      ``class_path`` and ``init_args``, whose keys jsonargparse checks against the rule's signature (a misspelt
      one is refused before anything runs), or a ``functools.partial`` of a rule class.
    """
    if isinstance(rule, str):
        return create_rule(rule, model, seed=seed, **(rule_args or {}))
    if rule_args:
        raise ValueError("rule_args go with a rule given by name; a rule given by class_path takes init_args")
    if isinstance(rule, dict):
        if set(rule) - {"class_path", "init_args"} or "class_path" not in rule:
            raise ValueError(f"a rule config has class_path and init_args, got keys {sorted(rule)}")
        module, _, name = rule["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module), name, None)
        if not (isinstance(cls, type) and issubclass(cls, LearningRule)):
            raise ValueError(f"class_path {rule['class_path']!r} is not a LearningRule")
        return cls(model, **{**(rule.get("init_args") or {}), "seed": seed})
    built = rule(model, seed=seed)
    if not isinstance(built, LearningRule):
        raise TypeError(f"the rule factory returned {type(built).__name__}, not a LearningRule")
    return built


def rule_config(rule: str | dict | RuleFactory) -> str | dict:
    """``rule`` in a form a checkpoint can hold: a name or a class_path config (a factory's class and keyword
    arguments; ``repr`` for anything else)."""
    if isinstance(rule, (str, dict)):
        return rule
    if isinstance(rule, functools.partial):
        cls = next((f for f in (rule.func, *rule.args) if isinstance(f, type) and issubclass(f, LearningRule)), None)
        if cls is not None:
            init = {k: v for k, v in rule.keywords.items() if k != "seed"}
            return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init}
    return repr(rule)


def rule_name(rule: str | dict | RuleFactory) -> str:
    """The registered name of ``rule`` (``"dfa"``, ``"nitro"``), else its class name."""
    config = rule_config(rule)
    if isinstance(config, str):
        return config
    class_path = config["class_path"]
    names = {f"{cls.__module__}.{cls.__qualname__}": name for name, cls in _RULES.items()}
    public = {f"torch_intnn.learning.{cls.__qualname__}": name for name, cls in _RULES.items()}
    return names.get(class_path) or public.get(class_path) or class_path.rpartition(".")[2]


def create_rule(name: str, model: nn.Module, **kwargs) -> LearningRule:
    """Build the learning rule ``name`` (see :func:`list_rules`) for ``model``."""
    import torch_intnn.learning  # noqa: F401  (registers the built-in rules)

    if name not in _RULES:
        raise KeyError(f"unknown learning rule {name!r}; known rules: {', '.join(sorted(_RULES)) or 'none'}")
    return _RULES[name](model, **kwargs)


def list_rules() -> list[str]:
    import torch_intnn.learning  # noqa: F401

    return sorted(_RULES)
