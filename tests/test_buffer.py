"""The sequence replay buffer: frames stored once, sequences never cross an episode end."""

import numpy as np
import pytest
import torch

from slac.buffer import SequenceReplayBuffer, last_steps


def fill(buffer: SequenceReplayBuffer, episode_lengths, start_id: int = 0) -> None:
    """Write episodes whose frames carry (episode id, time index) in their first two pixels."""
    for e, length in enumerate(episode_lengths, start=start_id):
        frame = np.zeros(buffer.frames.shape[1:], np.uint8)
        frame.flat[0], frame.flat[1] = e, 0
        buffer.add_first(frame)
        for t in range(1, length + 1):
            frame = frame.copy()
            frame.flat[1] = t
            buffer.add(np.full(buffer.action.shape[1], t, np.float32), reward=float(t), cost=float(e),
                       terminated=t == length, frame=frame)


@pytest.mark.parametrize("capacity", [50, 37])
def test_sequences_stay_in_one_episode_and_are_consecutive(capacity):
    rng = np.random.default_rng(0)
    buffer = SequenceReplayBuffer(capacity, (1, 2, 2), action_dim=2, sequence_length=4)
    lengths = rng.integers(2, 12, size=30)  # many short episodes; the ring wraps several times
    fill(buffer, lengths)
    batch = buffer.sample(256, rng)
    episode = batch["frames"][:, :, 0, 0, 0]  # (B, S+1)
    time = batch["frames"][:, :, 0, 0, 1].astype(int)
    assert (episode == episode[:, :1]).all(), "a sequence crossed an episode boundary"
    assert (np.diff(time, axis=1) == 1).all(), "frames of a sequence are not consecutive"
    # the transition fields belong to the frame they lead to
    np.testing.assert_array_equal(batch["reward"], time[:, 1:])
    np.testing.assert_array_equal(batch["action"][..., 0], time[:, 1:])
    np.testing.assert_array_equal(batch["cost"], episode[:, 1:])
    # termination only at an episode's last step, which can only be the last of a sequence
    assert not batch["terminated"][:, :-1].any()
    lengths_of = dict(enumerate(lengths))
    ends = np.array([lengths_of[int(e)] for e in episode[:, -1]])
    np.testing.assert_array_equal(batch["terminated"][:, -1], time[:, -1] == ends)


def test_too_short_episodes_raise_a_clear_error():
    buffer = SequenceReplayBuffer(100, (1, 2, 2), action_dim=1, sequence_length=5)
    fill(buffer, [3, 4, 2])
    assert buffer.num_valid_starts() == 0
    with pytest.raises(RuntimeError, match="no sequence of 6 frames"):
        buffer.sample(4, np.random.default_rng(0))


def test_valid_start_count_matches_a_direct_count():
    buffer = SequenceReplayBuffer(1000, (1, 1, 2), action_dim=1, sequence_length=3)
    lengths = [5, 2, 9, 3]
    fill(buffer, lengths)
    # an episode of L steps has L+1 frames and L-3+1 sequences of 3 transitions
    assert buffer.num_valid_starts() == sum(max(0, length - 3 + 1) for length in lengths)


def test_memory_cost_is_as_stated():
    buffer = SequenceReplayBuffer(1000, (3, 64, 64), action_dim=2, sequence_length=10)
    per_step = 3 * 64 * 64 + 4 * 2 + 4 + 4 + 1 + 1
    assert buffer.nbytes() == 1000 * per_step


def test_state_dict_round_trip_samples_identically():
    buffer = SequenceReplayBuffer(40, (1, 2, 2), action_dim=2, sequence_length=3)
    fill(buffer, [7, 9, 12, 6, 8])
    restored = SequenceReplayBuffer(40, (1, 2, 2), action_dim=2, sequence_length=3)
    restored.load_state_dict(buffer.state_dict())
    a = buffer.sample(32, np.random.default_rng(3))
    b = restored.sample(32, np.random.default_rng(3))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_last_steps_rows_are_sequence_major_for_arrays_and_tensors():
    x = np.arange(2 * 4 * 3).reshape(2, 4, 3)  # (B=2, T=4, 3): x[b, t] = [12b + 3t, +1, +2]
    expected = np.array([x[0, 2], x[0, 3], x[1, 2], x[1, 3]])  # row b·k + j = sequence b's step T-k+j
    assert np.array_equal(last_steps(x, 2), expected)
    assert torch.equal(last_steps(torch.as_tensor(x), 2), torch.as_tensor(expected))
    assert last_steps(np.arange(8).reshape(2, 4), 1).tolist() == [3, 7]  # per-step scalars: (B, T) -> (B·k,)
