"""One seed mixer: every rule's per-step randomness and the loader's epoch order come from (seed, counter)."""

import torch

from torch_intnn.data import BatchLoader
from torch_intnn.learning import create_rule
from torch_intnn.models import create_model
from torch_intnn.nn._draws import counter_generator


def _same(a: torch.Generator, b: torch.Generator) -> bool:
    return torch.equal(torch.randint(0, 2**30, (16,), generator=a), torch.randint(0, 2**30, (16,), generator=b))


def test_every_rule_and_the_loader_draw_from_counter_generator():
    rules = [create_rule("dfa", create_model("pocketnn_mlp_mnist"), seed=7),
             create_rule("dfa_faithful", create_model("pocketnn_mlp_mnist", variant="faithful"), seed=7),
             create_rule("nitro", create_model("nitro_mlp1"), seed=7)]
    for rule in rules:
        rule.steps.fill_(41)
        assert _same(rule.step_generator(), counter_generator(7, 41)), type(rule).__name__
        assert not _same(rule.step_generator(), counter_generator(7, 42))
    loader = BatchLoader(torch.zeros(50, 1, 2, 2, dtype=torch.uint8), torch.zeros(50, dtype=torch.int64), 10,
                         shuffle=True, seed=7)
    assert torch.equal(loader.order(3), torch.randperm(50, generator=counter_generator(7, 3)))


def test_counter_generator_mixes_seed_and_counter():
    assert _same(counter_generator(3, 5), counter_generator(3, 5))
    assert not _same(counter_generator(3, 5), counter_generator(5, 3))
    assert not _same(counter_generator(-1, 0), counter_generator(0, 0))  # negative seeds are valid and distinct
