"""Learning rules that replace ``backward()``: integer DFA and NITRO-D local error signals, and IntegerSGD."""

from torch_intnn.learning.base import (
    LearningRule, RuleFactory, build_rule, create_rule, list_rules, register_rule, rule_config, rule_name,
)
from torch_intnn.learning.sgd import IntegerSGD
from torch_intnn.learning import nitro  # noqa: F401,E402  (registers the "nitro" rule)
from torch_intnn.learning import dfa  # noqa: F401,E402  (registers the "dfa" and "dfa_faithful" rules)
from torch_intnn.learning.dfa import DFA, DirectFeedback, FaithfulDFA  # noqa: E402
from torch_intnn.learning.nitro import NitroRule  # noqa: E402
from torch_intnn.learning.schedule import PlateauSchedule

__all__ = [
    "IntegerSGD", "PlateauSchedule", "LearningRule", "RuleFactory", "DFA", "DirectFeedback", "FaithfulDFA", "NitroRule", "build_rule", "create_rule",
    "list_rules", "register_rule", "rule_config", "rule_name",
]
