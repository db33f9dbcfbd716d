"""The model registry: ``register_model`` / ``create_model`` / ``list_models``, as timm's.

A registered factory takes keyword arguments (at least ``seed``) and returns an ``nn.Module``. Registering a
model enrols it in the parametrised tests (purity audit, compile, state_dict round trip).
"""

from __future__ import annotations

from typing import Callable

from torch import nn

__all__ = ["register_model", "create_model", "list_models", "model_info"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_INFO: dict[str, dict] = {}


def register_model(name: str | None = None, **info) -> Callable:
    """Decorator: register a factory under ``name`` (default: the function's name).

    ``info`` is free metadata, e.g. ``dataset="mnist"``, ``rule="dfa"``, ``kind="integer"`` or ``"float"``,
    ``twin_of="pocketnn_mlp_mnist"``; tests and the CLI select models by it.
    """

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} is already registered")
        _MODELS[key] = fn
        _INFO[key] = dict(info)
        return fn

    return wrap


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with ``kwargs`` (see ``list_models()`` for the names)."""
    _load_builtin()
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(sorted(_MODELS)) or 'none'}")
    return _MODELS[name](**kwargs)


def list_models(**filters) -> list[str]:
    """Registered model names, sorted; ``filters`` keep those whose info matches, e.g. ``kind="integer"``."""
    _load_builtin()
    return sorted(k for k in _MODELS if all(_INFO[k].get(f) == v for f, v in filters.items()))


def model_info(name: str) -> dict:
    """The metadata a model was registered with."""
    _load_builtin()
    return dict(_INFO[name])


def _load_builtin() -> None:
    import torch_intnn.models  # noqa: F401  (importing the package registers the built-in models)
