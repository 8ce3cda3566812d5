"""Checkpoint files: atomic writes, pickle-free loading, clear errors."""

import os
import pickle

import numpy as np
import pytest
import torch

from slac import checkpoint
from slac.errors import InputError


def test_round_trip_keeps_every_tensor_and_number(tmp_path):
    state = {"model": {"w": torch.randn(3, 4)}, "counters": {"step": 7, "cost": 1.5}, "name": "x",
             "opt": torch.optim.Adam([torch.nn.Parameter(torch.ones(2))]).state_dict()}
    checkpoint.save(tmp_path / "a.pt", state)
    loaded = checkpoint.load(tmp_path / "a.pt")
    torch.testing.assert_close(loaded["model"]["w"], state["model"]["w"])
    assert loaded["counters"] == state["counters"] and loaded["name"] == "x"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp file left behind"


def test_run_directory_resolves_to_latest(tmp_path):
    checkpoint.save(tmp_path / "checkpoints" / checkpoint.LATEST, {"x": 1})
    assert checkpoint.load(tmp_path)["x"] == 1


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": checkpoint.FORMAT_VERSION, "payload": Evil()}, path)
    with pytest.raises(InputError, match="could not be loaded safely|corrupt"):
        checkpoint.load(path)


@pytest.mark.parametrize("content", [b"", b"not a zip", pickle.dumps({"a": 1})])
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch warns about the raw pickle we feed it
def test_corrupt_or_foreign_files_are_one_clear_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(InputError, match="bad.pt"):
        checkpoint.load(path)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save(path, {"w": torch.randn(100, 100)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt"):
        checkpoint.load(path)


def test_missing_paths(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        checkpoint.load(tmp_path / "nope.pt")
    with pytest.raises(InputError, match="no checkpoint in run directory"):
        checkpoint.load(tmp_path)


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save(path, {"v": 1})

    def explode(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        checkpoint.atomic_write(path, explode)
    assert checkpoint.load(path)["v"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_replay_arrays_round_trip_without_pickle(tmp_path):
    arrays = {"frames": np.arange(24, dtype=np.uint8).reshape(2, 3, 2, 2), "size": np.array(2)}
    checkpoint.save_replay(tmp_path / "r.npz", arrays)
    loaded = checkpoint.load_replay(tmp_path / "r.npz")
    np.testing.assert_array_equal(loaded["frames"], arrays["frames"])
    assert checkpoint.load_replay(tmp_path / "missing.npz") is None
