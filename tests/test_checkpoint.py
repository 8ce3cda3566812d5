"""Checkpoint files: atomic writes, pickle-free loading, clear errors."""

import os
import pickle

import numpy as np
import pytest
import torch

from slac import checkpoint
from slac.buffer import SequenceReplayBuffer
from slac.errors import InputError


def minimal_state(**extra) -> dict:
    """The entries every checkpoint has, with small values."""
    counters = {"step": 7, "env_steps": 14, "episodes": 1, "updates": 2, "model_updates": 3, "lifetime_cost": 1.5,
                "pretrained": True, "zero_shot_done": False}
    spec = {"obs_shape": [3, 8, 8], "action_dim": 1, "action_repeat": 2, "episode_steps": 5}
    return {"phase": "source", "config": {"seed": 0}, "env_spec": spec, "counters": counters,
            "model": {"w": torch.randn(3, 4)}, "agent": {"b": torch.zeros(2)}, **extra}


def test_round_trip_keeps_every_tensor_and_number(tmp_path):
    state = minimal_state(opt=torch.optim.Adam([torch.nn.Parameter(torch.ones(2))]).state_dict(), name="x")
    checkpoint.save(tmp_path / "a.pt", state)
    loaded = checkpoint.load(tmp_path / "a.pt")
    torch.testing.assert_close(loaded["model"]["w"], state["model"]["w"])
    assert loaded["counters"] == state["counters"] and loaded["name"] == "x"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp file left behind"


def test_run_directory_resolves_to_latest(tmp_path):
    checkpoint.save(tmp_path / "checkpoints" / checkpoint.LATEST, minimal_state(x=1))
    assert checkpoint.load(tmp_path)["x"] == 1


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.pop("config"), "'config' is missing"),
    (lambda s: s.pop("env_spec"), "'env_spec' is missing"),
    (lambda s: s.update(config="seed: 0"), "'config' is a str"),
    (lambda s: s["counters"].update(step="7"), "counter 'step' is a str"),
    (lambda s: s["counters"].pop("episodes"), "counter 'episodes' is missing"),
    (lambda s: s["counters"].update(updates=-1), "negative counters"),
    (lambda s: s["env_spec"].update(action_dim=1.5), "env_spec 'action_dim' is a float"),
    (lambda s: s["model"].update(w=[1, 2]), "not tensors"),
])
def test_damaged_entries_are_one_clear_error(tmp_path, damage, message):
    state = minimal_state()
    damage(state)
    checkpoint.save(tmp_path / "c.pt", state)
    with pytest.raises(InputError, match="damaged or not this project's: .*" + message):
        checkpoint.load(tmp_path / "c.pt")


def test_a_checkpoint_without_the_resume_entries_cannot_be_resumed(tmp_path):
    checkpoint.save(tmp_path / "c.pt", minimal_state())
    with pytest.raises(InputError, match="cannot be resumed exactly: it lacks model_optimizer"):
        checkpoint.check_resumable(checkpoint.load(tmp_path / "c.pt"))


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
    checkpoint.save(path, minimal_state(v=1))

    def explode(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        checkpoint.atomic_write(path, explode)
    assert checkpoint.load(path)["v"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def small_buffer() -> SequenceReplayBuffer:
    buffer = SequenceReplayBuffer(10, (3, 2, 2), 1, 2)
    buffer.add_first(np.zeros((3, 2, 2), np.uint8))
    for k in range(4):
        buffer.add(np.array([0.5]), 1.0, 0.0, False, np.full((3, 2, 2), k, np.uint8))
    return buffer


def test_replay_arrays_round_trip_without_pickle(tmp_path):
    buffer = small_buffer()
    checkpoint.save_replay(tmp_path / "r.npz", buffer.state_dict())
    loaded = checkpoint.load_replay(tmp_path / "r.npz")
    np.testing.assert_array_equal(loaded["frames"], buffer.frames[:5])
    restored = SequenceReplayBuffer(10, (3, 2, 2), 1, 2)
    restored.load_state_dict(loaded)
    assert (restored.cursor, restored.size) == (5, 5)
    with pytest.raises(InputError, match="is missing"):
        checkpoint.load_replay(tmp_path / "missing.npz")


def _npz(path, arrays, **kw):
    np.savez(path, **arrays, **kw)


@pytest.mark.parametrize("variant", ["not a zip", "truncated", "empty", "null bytes in an array header",
                                     "pickled objects", "missing key", "wrong shape", "wrong dtype",
                                     "size past capacity"])
def test_damaged_replays_are_one_clear_error(tmp_path, variant):
    path, arrays = tmp_path / "replay.npz", small_buffer().state_dict()
    if variant == "not a zip":
        path.write_bytes(b"garbage")
    elif variant == "truncated":
        checkpoint.save_replay(path, arrays)
        path.write_bytes(path.read_bytes()[:200])
    elif variant == "empty":
        path.write_bytes(b"")
    elif variant == "null bytes in an array header":  # numpy: a SyntaxError, then a tokenize.TokenError
        # frames past zipfile's first read (4 KiB), so the header is parsed before the CRC is checked
        checkpoint.save_replay(path, {**arrays, "frames": np.zeros((5, 3, 32, 32), np.uint8)})
        path.write_bytes(path.read_bytes().replace(b"hape': (", bytes(8), 1))
    elif variant == "pickled objects":
        np.savez(path, **{**arrays, "reward": np.array([{"a": 1}] * 5, dtype=object)})
    elif variant == "missing key":
        np.savez(path, **{k: v for k, v in arrays.items() if k != "cost"})
    elif variant == "wrong shape":
        np.savez(path, **{**arrays, "frames": arrays["frames"][:, :, :1]})
    elif variant == "wrong dtype":
        np.savez(path, **{**arrays, "action": arrays["action"].astype(np.float64)})
    else:
        np.savez(path, **{**arrays, "size": np.array(50), "cursor": np.array(0)})
    with pytest.raises(InputError):
        SequenceReplayBuffer(10, (3, 2, 2), 1, 2).load_state_dict(checkpoint.load_replay(path))


def test_a_snapshot_killed_before_latest_keeps_latest_and_its_replay(tmp_path):
    """Replay first, latest.pt second, old replays last: a kill in between leaves the old pair intact."""
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    checkpoint.save_snapshot(ckpt, minimal_state(), small_buffer().state_dict, keep=False)
    state = minimal_state()
    state["counters"]["step"] = 9
    original_save = checkpoint.save

    def killed(path, st):
        raise KeyboardInterrupt("killed while writing latest.pt")

    checkpoint.save = killed
    try:
        with pytest.raises(KeyboardInterrupt):
            checkpoint.save_snapshot(ckpt, state, small_buffer().state_dict, keep=False)
    finally:
        checkpoint.save = original_save
    latest = checkpoint.load(tmp_path)
    assert latest["counters"]["step"] == 7 and (ckpt / latest["replay_file"]).is_file()
    (ckpt / ".latest.pt.tmp123").write_bytes(b"partial")
    (ckpt / "replay_notes.npz").write_bytes(b"a user's file")  # not a name a snapshot writes: kept
    checkpoint.clean_stale(ckpt, latest["replay_file"])  # what a resume does first
    assert sorted(p.name for p in ckpt.iterdir()) == ["latest.pt", latest["replay_file"], "replay_notes.npz"]


def test_the_replay_file_names_the_step_a_study_reads_back(tmp_path):
    from slac import rundir
    from transfer.cell import checkpoint_step

    assert checkpoint_step(tmp_path) is None  # no latest.pt: no snapshot
    state = minimal_state()
    state["counters"]["step"] = 12_345
    checkpoint.save_snapshot(tmp_path / rundir.CHECKPOINTS, state, small_buffer().state_dict, keep=False)
    assert checkpoint.load(tmp_path)["replay_file"] == "replay_000012345.npz"
    assert checkpoint_step(tmp_path) == 12_345
    assert [rundir.replay_step(n) for n in ("replay_000000007.npz", "replay_7.npz", "replay_x.npz",
                                            "replay_7.npz.tmp", "latest.pt", "best_7.npz")] == [7, 7, None, None,
                                                                                                None, None]
