"""Learning rules that replace ``backward()``: integer DFA and NITRO-D local error signals, and IntegerSGD."""

from torch_intnn.learning.base import LearningRule, create_rule, list_rules, register_rule
from torch_intnn.learning.sgd import IntegerSGD

__all__ = ["IntegerSGD", "LearningRule", "create_rule", "list_rules", "register_rule"]
