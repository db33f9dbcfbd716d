import pytest
import torch

from torch_intnn.data import DATA_ENV, BatchLoader, DatasetUnavailable, load_split, resolve_root, train_val_split


def test_load_split_reads_torchvision_files_as_integers(fake_root):
    images, labels = load_split("mnist", fake_root, train=True, download=False)
    assert images.dtype == torch.uint8 and images.shape == (1200, 1, 28, 28)
    assert labels.dtype == torch.int64 and int(labels.max()) <= 9
    test_images, _ = load_split("fmnist", fake_root, train=False, download=False)
    assert test_images.shape == (300, 1, 28, 28)


def test_missing_root_error_names_root_and_how_to_set_it(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetUnavailable) as err:
        load_split("mnist", missing, download=False)
    assert str(missing) in str(err.value) and DATA_ENV in str(err.value) and "--data.root" in str(err.value)


def test_failed_download_gives_the_same_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def no_internet(self, *a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tvd.MNIST, "download", no_internet)
    with pytest.raises(DatasetUnavailable, match="network is unreachable"):
        load_split("mnist", tmp_path / "empty", download=True)


def test_truncated_dataset_file_is_reported(fake_root):
    path = fake_root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DatasetUnavailable, match="mnist"):
        load_split("mnist", fake_root, download=False)


def test_root_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert resolve_root(None) == tmp_path
    assert resolve_root("elsewhere").name == "elsewhere"
    monkeypatch.delenv(DATA_ENV)
    assert resolve_root(None).name == "data"


def test_val_split_is_disjoint_fixed_and_complete():
    train, val = train_val_split(1000, 100)
    assert len(val) == 100 and len(train) == 900
    assert len(set(train.tolist()) | set(val.tolist())) == 1000
    assert torch.equal(val, train_val_split(1000, 100)[1])


def test_batch_loader_reshuffles_per_epoch_and_resumes_mid_epoch():
    x = torch.arange(50).view(50, 1, 1, 1).to(torch.uint8)
    y = torch.arange(50)
    loader = BatchLoader(x, y, 8, shuffle=True, seed=3)
    epoch0 = [b[1] for b in loader]
    epoch1 = [b[1] for b in loader]
    assert len(epoch0) == len(loader) == 7
    assert sorted(torch.cat(epoch0).tolist()) == list(range(50))
    assert not torch.equal(torch.cat(epoch0), torch.cat(epoch1))

    fresh = BatchLoader(x, y, 8, shuffle=True, seed=3)
    it = iter(fresh)
    first = [next(it)[1] for _ in range(3)]
    resumed = BatchLoader(x, y, 8, shuffle=True, seed=3)
    resumed.load_state_dict(fresh.state_dict())
    rest = [b[1] for b in resumed]
    assert torch.equal(torch.cat(first + rest), torch.cat(epoch0))


def test_batch_loader_rejects_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        BatchLoader(torch.zeros(4, 1, 1, 1, dtype=torch.uint8), torch.zeros(4), 0)
    with pytest.raises(ValueError, match="labels"):
        BatchLoader(torch.zeros(4, 1, 1, 1, dtype=torch.uint8), torch.zeros(3), 2)


def test_batch_loader_left_before_its_end_still_reshuffles_and_set_epoch_names_the_epoch():
    """Lightning takes len(loader) batches and never resumes the generator that would end the epoch."""
    x = torch.arange(50).view(50, 1, 1, 1).to(torch.uint8)
    y = torch.arange(50)
    loader = BatchLoader(x, y, 8, shuffle=True, seed=3)
    first = [b[1] for _, b in zip(range(len(loader)), loader)]
    second = [b[1] for _, b in zip(range(len(loader)), loader)]
    assert loader.epoch == 1 and not torch.equal(torch.cat(first), torch.cat(second))
    assert torch.equal(torch.cat(first), loader.order(0)) and torch.equal(torch.cat(second), loader.order(1))
    other = BatchLoader(x, y, 8, shuffle=True, seed=3)
    other.set_epoch(1)
    assert torch.equal(torch.cat([b[1] for b in other]), torch.cat(second))


def _publish(monkeypatch, root, folder="MNIST"):
    """Declare the synthetic files under ``root`` as the published ones (their size and MD5), as if real."""
    import hashlib

    from torch_intnn.data import DATASET_INFO

    published = DATASET_INFO["mnist"].published
    for path in (root / folder / "raw").iterdir():
        rel = f"{folder}/raw/{path.name}"
        monkeypatch.setitem(published, rel, (path.stat().st_size, hashlib.md5(path.read_bytes()).hexdigest()))


def test_overwritten_bytes_of_a_published_file_are_caught_by_its_md5(fake_root, monkeypatch):
    _publish(monkeypatch, fake_root)
    assert load_split("mnist", fake_root, download=False)[0].shape == (1200, 1, 28, 28)
    path = fake_root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    data = bytearray(path.read_bytes())
    data[1000:101000] = bytes(range(256)) * 390 + bytes(160)  # same size, other pixels
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetUnavailable, match=r"train-images-idx3-ubyte' is damaged: its MD5 is"):
        load_split("mnist", fake_root, download=False)


def test_a_bad_label_file_is_named_and_nothing_is_downloaded(fake_root, monkeypatch):
    import torchvision.datasets as tvd

    def no_download(self, *a, **k):
        raise AssertionError("the files are there: nothing must be downloaded")

    monkeypatch.setattr(tvd.MNIST, "download", no_download)
    path = fake_root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x00\x00" + path.read_bytes()[4:])  # bad magic
    with pytest.raises(DatasetUnavailable, match="train-labels-idx1-ubyte") as err:
        load_split("mnist", fake_root, download=True)
    assert "download" not in str(err.value)


def test_a_truncated_cifar_batch_is_named(tmp_path):
    import pickle

    import numpy as np

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batch = {"data": np.zeros((10, 3072), dtype=np.uint8), "labels": [0] * 10}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:100])
    with pytest.raises(DatasetUnavailable, match="data_batch_3"):
        load_split("cifar10", tmp_path, download=False)


def test_a_missing_root_creates_nothing(tmp_path, monkeypatch):
    """torchvision's download makes MNIST/raw before it fetches; a failed download must not leave it behind."""
    from urllib.error import URLError

    import torchvision.datasets.mnist as tv_mnist

    def no_internet(*a, **k):
        raise URLError("network is unreachable")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", no_internet)
    for download in (False, True):
        with pytest.raises(DatasetUnavailable, match="missing"):
            load_split("mnist", tmp_path / "nowhere", download=download)
    assert list(tmp_path.iterdir()) == []


def test_the_published_files_verify_where_they_are(monkeypatch):
    """The known MD5s are right: the real datasets, where the data root holds them (CI prepares them)."""
    import os

    if not os.environ.get(DATA_ENV):
        pytest.skip(f"{DATA_ENV} is not set: no real datasets on this machine")
    for name in ("mnist", "fmnist", "cifar10"):
        for train in (True, False):
            images, _ = load_split(name, None, train=train, download=False)
            assert len(images) == (10000 if not train else 50000 if name == "cifar10" else 60000)
