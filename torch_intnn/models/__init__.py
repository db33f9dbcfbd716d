"""Registered model factories. Importing this package registers every built-in model."""

from torch_intnn.models._registry import create_model, list_models, model_info, register_model

__all__ = ["create_model", "list_models", "model_info", "register_model"]
