"""ToIntTensor: PIL images, arrays and tensors to integer tensors, inside torchvision pipelines, with no float op."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from torch_intnn.audit import FloatOpError, IntegerOnly, OpRecorder
from torch_intnn.nn import ToIntTensor


def image(mode: str, h: int = 28, w: int = 28) -> Image.Image:
    rng = np.random.default_rng(0)
    shape = (h, w) if mode == "L" else (h, w, 3)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


@pytest.mark.parametrize("mode,channels", [("L", 1), ("RGB", 3)])
def test_pil_images_keep_their_pixels(mode, channels):
    img = image(mode, 5, 7)
    t = ToIntTensor()(img)
    assert t.dtype == torch.uint8 and t.shape == (channels, 5, 7)
    expected = torch.from_numpy(np.array(img)).reshape(5, 7, channels).permute(2, 0, 1)
    assert torch.equal(t, expected)
    centred = ToIntTensor(center=True)(img)
    assert centred.dtype == torch.int8 and torch.equal(centred.to(torch.int16), expected.to(torch.int16) - 128)


def test_compose_with_augmentation_runs_no_float_op():
    pipeline = transforms.Compose([transforms.RandomCrop(28, padding=2), ToIntTensor(center=True)])
    torch.manual_seed(0)
    with OpRecorder() as rec:
        out = pipeline(image("L"))
    assert out.dtype == torch.int8 and out.shape == (1, 28, 28)
    assert "randint" in rec.ops, "the recorder saw RandomCrop's draw"
    assert rec.float_ops == []
    with IntegerOnly():
        ToIntTensor()(image("RGB"))


def test_a_float_draw_in_the_pipeline_is_caught():
    """torchvision's RandomHorizontalFlip draws ``torch.rand(1) < p``, a float op: the audit names it."""
    pipeline = transforms.Compose([transforms.RandomHorizontalFlip(), ToIntTensor()])
    with pytest.raises(FloatOpError, match="aten.rand"):
        with IntegerOnly():
            pipeline(image("L"))


def test_arrays_tensors_and_bad_input():
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert torch.equal(ToIntTensor()(arr), torch.from_numpy(arr)[None])
    t = torch.arange(12, dtype=torch.uint8).view(1, 3, 4)
    assert torch.equal(ToIntTensor()(t), t)
    with pytest.raises(TypeError, match="torch.float32"):
        ToIntTensor()(torch.zeros(1, 3, 4))
    assert "pixel - 128" in repr(ToIntTensor(center=True)) and "0..255" in repr(ToIntTensor())


@pytest.mark.parametrize(
    "pic,match",
    [
        (np.full((3, 4), 0.7), "float64"),  # was truncated to 0
        (Image.fromarray(np.full((3, 4), 300.5, dtype=np.float32), "F"), r"float32 \(PIL mode F\)"),  # was 44
        (Image.fromarray(np.full((3, 4), 1000, dtype=np.int32), "I"), r"int32 \(PIL mode I\)"),  # was 232
        (np.full((3, 4), 7, dtype=np.int64), "int64"),
        (Image.fromarray(np.zeros((3, 4), dtype=bool)), r"bool \(PIL mode 1\)"),
    ],
)
def test_anything_but_uint8_pixels_is_refused_naming_the_dtype(pic, match):
    with pytest.raises(TypeError, match=match):
        ToIntTensor()(pic)
