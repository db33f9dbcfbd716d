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
