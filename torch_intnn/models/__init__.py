"""Registered model factories. Importing this package registers every built-in model."""

from torch_intnn.models._registry import create_model, list_models, model_info, register_model
from torch_intnn.models import nitro  # noqa: F401  (registers the NITRO-D models)
from torch_intnn.models import pocketnn  # noqa: F401  (registers the PocketNN MLPs)
from torch_intnn.models import float_twins  # noqa: F401  (registers a float twin of each, from its layout)

__all__ = ["create_model", "list_models", "model_info", "register_model"]
