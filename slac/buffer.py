"""Sequence replay buffer storing each frame once.

Layout: flat ring arrays indexed by *slot*. Slot ``i`` holds frame ``x_i`` and the transition that
led to it: ``action[i]`` (a_{i-1}), ``reward[i]``, ``cost[i]``, ``terminated[i]``. A slot written by
``reset`` has ``first[i] = True`` and zero transition fields. A training sequence of S transitions
starting at slot ``j`` is frames ``x_j .. x_{j+S}`` with the transitions of slots ``j+1 .. j+S``;
it is valid when none of ``j+1 .. j+S`` starts an episode (so it never crosses an episode end) and
all of ``j .. j+S`` hold data of the current pass of the ring.

Memory: ``capacity * (C*H*W + 4*(A + 2) + 2)`` bytes; for 64x64 RGB frames about 12.3 kB per
step, i.e. 2.46 GB at Safe SLAC's capacity of 2e5 (reported by :meth:`nbytes`).
"""

from __future__ import annotations

import numpy as np

from slac.errors import InputError


def last_steps(x, k: int):
    """The last k steps of a batch of sequences as rows: (B, T, ...) -> (B·k, ...), row b·k + j being
    sequence b's step T-k+j (numpy arrays or tensors). The agent's transitions t = S-k .. S-1 are
    ``last_steps(z[:, :-1], k)`` -> ``last_steps(z, k)`` for latents (B, S+1, L) and ``last_steps(a, k)``
    for per-transition data (B, S, ...)."""
    return x[:, -k:].reshape(-1, *x.shape[2:])


class SequenceReplayBuffer:
    """Ring buffer of frames and transitions; samples length-(S+1) sequences within episodes."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], action_dim: int, sequence_length: int):
        self.capacity = int(capacity)
        self.sequence_length = int(sequence_length)
        self.frames = np.zeros((capacity, *obs_shape), np.uint8)  # (N, C, H, W)
        self.action = np.zeros((capacity, action_dim), np.float32)  # a_{i-1}, led to frame i
        self.reward = np.zeros(capacity, np.float32)
        self.cost = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, bool)
        self.first = np.ones(capacity, bool)  # unwritten slots count as episode starts
        self.cursor = 0  # next slot to write
        self.size = 0  # slots holding data

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.frames, self.action, self.reward, self.cost,
                                      self.terminated, self.first))

    def _write(self, frame, action, reward, cost, terminated, first) -> None:
        i = self.cursor
        self.frames[i] = frame
        self.action[i] = action
        self.reward[i] = reward
        self.cost[i] = cost
        self.terminated[i] = terminated
        self.first[i] = first
        self.cursor = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def add_first(self, frame: np.ndarray) -> None:
        """The frame returned by ``env.reset``."""
        self._write(frame, 0.0, 0.0, 0.0, False, True)

    def add(self, action, reward: float, cost: float, terminated: bool, frame: np.ndarray) -> None:
        """One env step: the action taken and what it produced (reward, cost, termination, next frame)."""
        self._write(frame, action, reward, cost, terminated, False)

    def _valid_starts(self, starts: np.ndarray) -> np.ndarray:
        """Mask of sequence starts that stay in one episode and in written, ordered data."""
        S = self.sequence_length
        # offset of each start from the oldest slot, in ring order; sequences must not wrap past the cursor
        oldest = self.cursor if self.size == self.capacity else 0
        age = (starts - oldest) % self.capacity
        inside = age + S < self.size
        idx = (starts[:, None] + np.arange(1, S + 1)) % self.capacity  # (n, S)
        return inside & ~self.first[idx].any(axis=1)

    def num_valid_starts(self) -> int:
        return int(self._valid_starts(np.arange(self.size)).sum())

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Sample ``batch_size`` sequences uniformly among valid starts.

        Returns frames (B, S+1, C, H, W) uint8, action (B, S, A), reward/cost/terminated (B, S).
        """
        S = self.sequence_length
        starts = np.empty(0, np.int64)
        for _ in range(100):  # rejection sampling; valid starts are the vast majority once data exists
            cand = rng.integers(0, self.size, 4 * batch_size + 8)
            if self.size == self.capacity:
                cand = (cand + self.cursor) % self.capacity  # uniform over the ring
            starts = np.concatenate([starts, cand[self._valid_starts(cand)]])
            if len(starts) >= batch_size:
                break
        else:
            raise RuntimeError(
                f"replay buffer holds no sequence of {S + 1} frames inside one episode "
                f"(size {self.size}); collect more steps or use shorter sequences")
        starts = starts[:batch_size]
        frame_idx = (starts[:, None] + np.arange(S + 1)) % self.capacity  # (B, S+1)
        step_idx = frame_idx[:, 1:]  # transitions leading to frames 1..S
        return {
            "frames": self.frames[frame_idx],
            "action": self.action[step_idx],
            "reward": self.reward[step_idx],
            "cost": self.cost[step_idx],
            "terminated": self.terminated[step_idx].astype(np.float32),
        }

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays to save for resuming (only the filled part)."""
        n = self.size
        return {"frames": self.frames[:n], "action": self.action[:n], "reward": self.reward[:n],
                "cost": self.cost[:n], "terminated": self.terminated[:n], "first": self.first[:n],
                "cursor": np.array(self.cursor), "size": np.array(self.size)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore a saved buffer; InputError if its arrays do not fit this buffer or each other."""
        try:
            n, cursor = int(state["size"]), int(state["cursor"])
        except (TypeError, ValueError):
            raise InputError("saved replay buffer has a malformed size or cursor") from None
        expected = {key: (getattr(self, key).dtype, getattr(self, key).shape[1:])
                    for key in ("frames", "action", "reward", "cost", "terminated", "first")}
        for key, (dtype, shape) in expected.items():
            a = state[key]
            if a.dtype != dtype or a.shape != (n, *shape):
                raise InputError(f"saved replay buffer's {key} is {a.dtype} {a.shape}, this run needs {dtype} "
                                 f"{(n, *shape)} (a replay of another run or config, or a damaged one)")
        full_or_in_order = n == self.capacity or cursor == n % self.capacity
        if not (0 < n <= self.capacity and 0 <= cursor < self.capacity and full_or_in_order):
            raise InputError(f"saved replay buffer's size {n} and cursor {cursor} do not fit capacity {self.capacity}")
        for key in expected:
            getattr(self, key)[:n] = state[key]
        self.first[n:] = True
        self.cursor, self.size = cursor, n

    def current_episode(self) -> tuple[np.ndarray, np.ndarray]:
        """The frames (T+1, C, H, W) and actions (T, A) of the latest episode so far, from its reset frame."""
        last = (self.cursor - 1) % self.capacity
        for back in range(self.size):
            start = (last - back) % self.capacity
            if self.first[start]:
                idx = (start + np.arange(back + 1)) % self.capacity
                return self.frames[idx], self.action[idx[1:]]
        raise InputError("the replay buffer no longer holds the start of the current episode "
                         "(train.buffer_size is shorter than an episode)")
