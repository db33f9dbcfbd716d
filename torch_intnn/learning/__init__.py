"""Learning rules that replace ``backward()``: integer DFA and NITRO-D local error signals, and IntegerSGD."""

from torch_intnn.learning.base import LearningRule, create_rule, list_rules, register_rule
from torch_intnn.learning.sgd import IntegerSGD
from torch_intnn.learning import nitro  # noqa: F401,E402  (registers the "nitro" rule)
from torch_intnn.learning import dfa  # noqa: F401,E402  (registers the "dfa" rule)
from torch_intnn.learning.schedule import PlateauSchedule

__all__ = ["IntegerSGD", "PlateauSchedule", "LearningRule", "create_rule", "list_rules", "register_rule"]
