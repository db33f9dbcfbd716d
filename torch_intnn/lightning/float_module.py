"""``FloatClassifier``: the float32 baselines of the integer runs, on the same DataModules and protocol.

Three learning rules on one float twin (:mod:`torch_intnn.models.float_twins`), so that a comparison can separate
the learning rule from the arithmetic:

* ``bp``: ordinary backprop of the cross-entropy through the whole network;
* ``dfa``: direct feedback alignment: block k receives ``e @ B_k`` with ``e = softmax(out) - onehot(y)`` and a fixed
  random ``B_k`` (a buffer, saved in checkpoints); no gradient crosses blocks;
* ``les``: local error signals: each block has a linear head (after average pooling to at most ``les_dim``
  features) trained with its own cross-entropy ("pred"); with ``les_loss`` the block trains instead on the
  similarity-matching loss of its pooled features ("sim", Nokland and Eidnes' MSE of the cosine-similarity
  matrices of features and one-hot labels; the head still learns its cross-entropy) or on
  ``(1 - sim_beta) pred + sim_beta sim`` ("predsim"); no gradient crosses blocks. The integer rule's
  ``local_loss`` computes the same losses (:mod:`torch_intnn.learning.similarity`).

The output layer always learns from the cross-entropy of its own output. Logged names match
:class:`~torch_intnn.lightning.IntegerClassifier`: ``train/loss``, ``train/acc``, ``val/acc``, ``test/acc``.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from torch_intnn.lightning._logging import RunLogging
from torch_intnn.nn.nitro_blocks import pool_to_d
from torch_intnn.models import create_model
from torch_intnn.ops._checks import check_int_arg

__all__ = ["FloatClassifier"]

RULES = ("bp", "dfa", "les")
LES_LOSSES = ("pred", "sim", "predsim")


def _similarity(x: torch.Tensor) -> torch.Tensor:
    """Cosine similarities of the centred rows of ``x`` (N, ...) flattened: (N, N)."""
    x = x.flatten(1)
    x = x - x.mean(1, keepdim=True)
    x = x / (x.norm(dim=1, keepdim=True) + 1e-8)
    return x @ x.T


class FloatClassifier(RunLogging, pl.LightningModule):
    """Train a registered float twin with backprop, DFA or local error signals.

    Args:
        model: registered float model (``<integer model>_float``).
        rule: ``"bp"``, ``"dfa"`` or ``"les"``.
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9, Nesterov).
        lr: initial learning rate, decayed by a cosine schedule to 0 over ``max_epochs``.
        weight_decay: L2 weight decay.
        les_dim: largest head input of a LES block (average pooling reaches it).
        les_loss: ``"pred"``, ``"sim"`` or ``"predsim"``: what trains a LES block (module docstring).
        sim_beta: the similarity loss's weight in ``"predsim"`` (Nokland and Eidnes: 0.99).
        label_smoothing: cross-entropy label smoothing of the backprop loss (``F.cross_entropy``'s argument).
        ema: decay of an exponential moving average of the weights, updated after every optimizer step
            (``torch.optim.swa_utils.AveragedModel``); validation, test and ``forward`` then use the average.
            ``0`` (the default) keeps no average.
        seed: seed of the weights and DFA feedback matrices (default: ``seed_everything``'s).
        histogram_every_n_epochs: how often weight histograms are written (0 = never).

    Logs the tags an integer run logs (:mod:`torch_intnn.lightning._logging`), so the two overlay in TensorBoard.
    """

    def __init__(
        self,
        model: str,
        model_args: dict | None = None,
        rule: str = "bp",
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        les_dim: int = 2048,
        les_loss: str = "pred",
        sim_beta: float = 0.99,
        label_smoothing: float = 0.0,
        ema: float = 0.0,
        seed: int | None = None,
        histogram_every_n_epochs: int = 1,
    ) -> None:
        super().__init__()
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        if les_loss not in LES_LOSSES:
            raise ValueError(f"les_loss must be one of {LES_LOSSES}, got {les_loss!r}")
        if not 0.0 <= sim_beta <= 1.0:
            raise ValueError(f"sim_beta must be in [0, 1], got {sim_beta!r}")
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"ema must be a decay in [0, 1), got {ema!r}")
        if not lr > 0.0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        check_int_arg("les_dim", les_dim, 1)
        check_int_arg("histogram_every_n_epochs (0 = never)", histogram_every_n_epochs, 0)
        self.histogram_every_n_epochs = histogram_every_n_epochs
        self.save_hyperparameters()
        seed = 0 if seed is None else seed
        self.net = create_model(model, seed=seed, **(model_args or {}))
        self.rule, self.lr, self.weight_decay, self.opt_name = rule, lr, weight_decay, optimizer
        self.label_smoothing = label_smoothing
        self.les_loss, self.sim_beta = les_loss, sim_beta
        self.ema_net = None
        if ema:
            self.ema_net = AveragedModel(self.net, multi_avg_fn=get_ema_multi_avg_fn(ema), use_buffers=True)
            self.ema_net.requires_grad_(False)
        shapes = self._block_shapes()
        gen = torch.Generator().manual_seed(seed + 1)
        if rule == "dfa":
            for k, shape in enumerate(shapes):
                n = math.prod(shape)
                self.register_buffer(f"feedback_{k}", (torch.rand(10, n, generator=gen) * 2 - 1) / math.sqrt(10))
        if rule == "les":
            self.heads = nn.ModuleList(self._les_head(shape, les_dim) for shape in shapes)
        self._counts: dict[str, list[int]] = {}

    def _block_shapes(self) -> list[tuple[int, ...]]:
        from torch_intnn.models import model_info

        c, h, w = model_info(self.hparams.model)["input_shape"]
        with torch.no_grad():
            outs = self.net.features(torch.zeros(1, c, h, w, dtype=torch.uint8))
        return [tuple(o.shape[1:]) for o in outs]

    @staticmethod
    def _les_head(shape: tuple[int, ...], dim: int) -> nn.Module:
        if len(shape) == 1:
            return nn.Linear(shape[0], 10)
        c, h, w = shape
        kh, kw = pool_to_d(c, h, w, dim)  # the integer heads' rule (LES's pool-to-d), so both reduce alike
        pool = nn.AdaptiveAvgPool2d((math.ceil(h / kh), math.ceil(w / kw)))
        return nn.Sequential(pool, nn.Flatten(), nn.Linear(c * math.ceil(h / kh) * math.ceil(w / kw), 10))

    @property
    def eval_net(self) -> nn.Module:
        """The network validation, test and ``forward`` use: the weight average when ``ema`` is on."""
        return self.net if self.ema_net is None else self.ema_net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.eval_net(x)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]  # not the weight average's
        if self.opt_name == "adam":
            opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, nesterov=True,
                                  weight_decay=self.weight_decay)
        epochs = max(self.trainer.max_epochs or 1, 1)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        return {"optimizer": opt, "lr_scheduler": sched}

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        local = self.rule != "bp"
        feats = self.net.features(x, detach_between=local)
        out = self.net.output(feats[-1].detach() if local else feats[-1])
        loss = F.cross_entropy(out, y, label_smoothing=self.label_smoothing)
        total = loss
        if self.rule == "dfa":
            e = (out.detach().softmax(1) - F.one_hot(y, 10).float()) / len(y)
            for k, h in enumerate(feats):
                signal = (e @ getattr(self, f"feedback_{k}")).view_as(h)
                total = total + (h * signal).sum()
        elif self.rule == "les":
            target = _similarity(F.one_hot(y, 10).float()) if self.les_loss != "pred" else None
            for head, h in zip(self.heads, feats):
                total = total + self._les_loss(head, h, y, target)
        self._count("train", out, y, loss)
        return total

    def _les_loss(self, head: nn.Module, h: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None):
        """A LES block's loss (module docstring); the similarity is taken on the head's pooled input."""
        if self.les_loss == "pred":
            return F.cross_entropy(head(h), y)
        pooled = head[:-1](h) if isinstance(head, nn.Sequential) else h  # the pooled, flattened features
        linear = head[-1] if isinstance(head, nn.Sequential) else head
        sim = F.mse_loss(_similarity(pooled), target)
        if self.les_loss == "sim":  # the head learns its cross-entropy without training the block
            return sim + F.cross_entropy(linear(pooled.detach()), y)
        return (1 - self.sim_beta) * F.cross_entropy(linear(pooled), y) + self.sim_beta * sim

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema_net is not None:
            self.ema_net.update_parameters(self.net)

    def on_train_epoch_start(self) -> None:
        self._reset("train")
        self._log_lr(self.optimizers().param_groups[0]["lr"])

    def on_train_epoch_end(self) -> None:
        correct, seen, loss_sum = self._counts["train"]
        seen = max(int(seen), 1)
        self._log_train(int(correct) / seen, float(loss_sum) / seen)
        self._log_weight_histograms(self.net.named_parameters())

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self._save_best(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._load_best(checkpoint)

    def on_validation_epoch_start(self) -> None:
        self._reset("val")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._count("val", self.eval_net(batch[0]), batch[1])

    def on_validation_epoch_end(self) -> None:
        correct, seen, _ = self._counts["val"]
        self._log_val(int(correct) / max(seen, 1))

    def on_test_epoch_start(self) -> None:
        self._reset("test")

    def test_step(self, batch, batch_idx: int) -> None:
        self._count("test", self.eval_net(batch[0]), batch[1])

    def predict_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        """Predicted classes (N,) int64 of a batch, with its labels (``intnn predict`` writes both)."""
        x, y = batch
        return {"prediction": self.eval_net(x).argmax(1), "label": y}

    def on_test_epoch_end(self) -> None:
        correct, seen, _ = self._counts["test"]
        self._log_test(int(correct) / max(seen, 1))

    def _reset(self, split: str) -> None:
        self._counts[split] = [0, 0, 0.0]  # correct, seen, loss sum (tensors once counting starts: no sync)

    def _count(self, split: str, scores: torch.Tensor, y: torch.Tensor, loss: torch.Tensor | None = None) -> None:
        counts = self._counts.setdefault(split, [0, 0, 0.0])
        counts[0] = counts[0] + (scores.detach().argmax(1) == y).sum()
        counts[1] += len(y)
        if loss is not None:
            counts[2] = counts[2] + loss.detach() * len(y)
