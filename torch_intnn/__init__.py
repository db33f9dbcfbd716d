"""torch_intnn: integer-only training and inference of neural networks in PyTorch.

Layers, one way: ``ops`` (stateless exact kernels) -> ``nn`` (modules) / ``learning`` (rules replacing
backward) -> ``models`` (registered factories) -> ``lightning`` (training loop, data, CLI; imported only on
demand). Importing this package loads neither Lightning, torchvision nor TensorBoard.
"""

from torch_intnn import audit, learning, models, nn, ops
from torch_intnn.models import create_model, list_models, register_model

__version__ = "0.1.0"
__all__ = ["audit", "learning", "models", "nn", "ops", "create_model", "list_models", "register_model"]
