"""Domain randomisation: every training episode gets its own env parameters, drawn from ranges.

    RandomizedEnv(name, ranges, exclude=None, sampler="uniform", seed=None, **overrides)

``ranges`` maps env parameters (``python -m envs --list`` names the envs; ``envs/dmc.py`` their
parameters) to ``[low, high]``: numbers (``pole_mass: [0.05, 0.3]``) or, for a colour, two rgba
corners (``body_rgba: [[0, 0, 0, 1], [1, 1, 1, 1]]``, drawn per component). ``exclude`` maps a
parameter to intervals (boxes for colours) that are never drawn, so a held-out target value stays
unseen: ``pole_mass: [[0.35, 0.45]]``. A draw is uniform over the range outside the excluded parts
(rejection sampling).

Episode k's parameters depend only on its reset seed (``slac.rollout.episode_seed``) and, for the
``worst_cost`` sampler, on the costs of the episodes before it, so a run repeats for a seed and a
resumed run (``state_dict``) draws what the uninterrupted run would have. ``episode_params`` holds the
running episode's values (colours as ``<name>_0`` .. ``<name>_3``) for the run's metrics.

Samplers:
- ``uniform``: domain randomisation (Tobin et al., 2017).
- ``worst_cost``: an adversary on the physics. It draws ``candidates`` parameter sets and takes the
  one whose predicted episode cost is highest, the prediction being the mean cost of the
  ``neighbours`` nearest of the last ``memory`` episodes (parameters scaled to [0, 1] per component);
  a share ``explore`` of episodes (and every episode until ``neighbours`` have ended) is drawn
  uniformly. It pushes training towards the dynamics and looks where the policy pays most, as pixel
  attacks push it towards the images it misreads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from slac.errors import InputError, unknown

SAMPLERS = ("uniform", "worst_cost")
RANDOMIZE_STREAM = 0x52414E44  # seeds the draws apart from the simulator's own use of the episode seed
MAX_REJECTIONS = 10_000  # draws tried before a range is taken to be all excluded


@dataclass
class Range:
    """One parameter's range: low and high as arrays (one component for a number, four for a colour)."""

    key: str
    low: np.ndarray
    high: np.ndarray
    exclude: list[tuple[np.ndarray, np.ndarray]]
    colour: bool

    def excluded(self, x: np.ndarray) -> bool:
        return any(bool(np.all((lo <= x) & (x <= hi))) for lo, hi in self.exclude)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        for _ in range(MAX_REJECTIONS):
            x = rng.uniform(self.low, self.high)
            if not self.excluded(x):
                return x
        raise InputError(f"randomize.exclude leaves (almost) nothing of the range of {self.key!r} "
                         f"[{_fmt(self.low)}, {_fmt(self.high)}] to draw from")

    def value(self, x: np.ndarray):
        return tuple(float(v) for v in x) if self.colour else float(x[0])

    def unit(self, x: np.ndarray) -> np.ndarray:
        """x scaled to [0, 1] per component (0 where the range is a point)."""
        width = self.high - self.low
        return np.divide(x - self.low, width, out=np.zeros_like(x), where=width > 0)


def _fmt(a: np.ndarray) -> str:
    return f"{a[0]:g}" if a.size == 1 else "(" + ", ".join(f"{v:g}" for v in a) + ")"


def _bounds(key: str, pair, what: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """[low, high] of numbers, or of two equal-length lists (a colour), as arrays; else InputError."""
    form = f"{what} must be [low, high] (numbers, or two [r, g, b, a] lists for a colour)"
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        raise InputError(f"{form}, got {pair!r}")
    colour = all(isinstance(p, (list, tuple)) for p in pair)
    try:
        low, high = (np.atleast_1d(np.asarray(p, dtype=np.float64)) for p in pair)
    except (TypeError, ValueError):
        raise InputError(f"{form}, got {pair!r}") from None
    if low.shape != high.shape or low.ndim != 1 or (colour and low.size < 2) or (not colour and low.size != 1):
        raise InputError(f"{form}, got {pair!r}")
    if not (np.isfinite(low).all() and np.isfinite(high).all()) or np.any(low > high):
        raise InputError(f"{what} must have finite low <= high, got {pair!r}")
    return low, high, colour


def parse_ranges(ranges: dict, exclude: dict | None = None) -> list[Range]:
    """The config's ``randomize.ranges`` and ``randomize.exclude`` as :class:`Range` s (shapes checked;
    whether the env takes the keys and values is checked by building it at both corners)."""
    exclude = exclude or {}
    stray = sorted(set(exclude) - set(ranges))
    if stray:
        raise InputError(f"randomize.exclude names {', '.join(map(repr, stray))}, which randomize.ranges does not "
                         f"randomise; valid: {', '.join(map(repr, ranges)) or 'none'}")
    out = []
    for key, pair in ranges.items():
        low, high, colour = _bounds(key, pair, f"randomize.ranges.{key}")
        boxes = exclude.get(key, [])
        if not isinstance(boxes, (list, tuple)):
            raise InputError(f"randomize.exclude.{key} must be a list of [low, high] intervals, got {boxes!r}")
        holes = []
        for box in boxes:
            lo, hi, box_colour = _bounds(key, box, f"each interval of randomize.exclude.{key}")
            if box_colour != colour or lo.shape != low.shape:
                raise InputError(f"randomize.exclude.{key}: {box!r} does not have the shape of its range {pair!r}")
            holes.append((lo, hi))
        out.append(Range(key, low, high, holes, colour))
    return out


class UniformSampler:
    def __init__(self, ranges: list[Range]):
        self.ranges = ranges

    def draw(self, rng: np.random.Generator) -> list[np.ndarray]:
        return [r.draw(rng) for r in self.ranges]

    def observe(self, drawn: list[np.ndarray], cost: float) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class WorstCostSampler(UniformSampler):
    """The physics adversary (module docstring): the candidate with the highest predicted cost."""

    def __init__(self, ranges: list[Range], candidates: int = 16, explore: float = 0.25, neighbours: int = 5,
                 memory: int = 100):
        super().__init__(ranges)
        self.candidates, self.explore, self.neighbours, self.memory = candidates, explore, neighbours, memory
        self.points: list[list[float]] = []  # the last `memory` episodes' parameters, scaled to [0, 1]
        self.costs: list[float] = []

    def _unit(self, drawn: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([r.unit(x) for r, x in zip(self.ranges, drawn, strict=True)])

    def predict(self, drawn: list[np.ndarray]) -> float:
        """Mean cost of the ``neighbours`` remembered episodes nearest to ``drawn``."""
        distance = np.linalg.norm(np.asarray(self.points) - self._unit(drawn), axis=1)
        nearest = np.argsort(distance, kind="stable")[: self.neighbours]
        return float(np.mean(np.asarray(self.costs)[nearest]))

    def draw(self, rng: np.random.Generator) -> list[np.ndarray]:
        explore = rng.random() < self.explore  # drawn every time, so the stream does not depend on history
        options = [super(WorstCostSampler, self).draw(rng) for _ in range(self.candidates)]
        if explore or len(self.costs) < self.neighbours:
            return options[0]
        return max(options, key=self.predict)  # the first of equal predictions

    def observe(self, drawn: list[np.ndarray], cost: float) -> None:
        self.points = [*self.points, self._unit(drawn).tolist()][-self.memory:]
        self.costs = [*self.costs, float(cost)][-self.memory:]

    def state_dict(self) -> dict:
        return {"points": [list(p) for p in self.points], "costs": list(self.costs)}

    def load_state_dict(self, state: dict) -> None:
        self.points, self.costs = [list(p) for p in state["points"]], list(state["costs"])


def make_sampler(ranges: list[Range], sampler: str = "uniform", **options) -> UniformSampler:
    if sampler == "uniform":
        return UniformSampler(ranges)
    if sampler == "worst_cost":
        return WorstCostSampler(ranges, **options)
    raise unknown("randomize.sampler", sampler, SAMPLERS)


class RandomizedEnv(gym.Wrapper):
    """An env whose parameters are redrawn at every reset (see the module docstring)."""

    def __init__(self, build, ranges: list[Range], sampler: UniformSampler, seed: int | None = None):
        """``build(**params)`` makes the env with the given parameters on top of its own."""
        self.build, self.ranges, self.sampler = build, ranges, sampler
        for corner in ("low", "high"):  # the env refuses keys it lacks and values out of its range, now
            build(**{r.key: r.value(getattr(r, corner)) for r in ranges}).close()
        super().__init__(build())
        self._unseeded = np.random.default_rng(seed)
        self._drawn: list[np.ndarray] | None = None
        self._steps, self._cost = 0, 0.0

    @property
    def episode_params(self) -> dict[str, float]:
        """The running episode's parameters (a colour's components as <key>_0 ..)."""
        out = {}
        for r, x in zip(self.ranges, self._drawn or [], strict=False):
            if r.colour:
                out.update({f"{r.key}_{i}": float(v) for i, v in enumerate(x)})
            else:
                out[r.key] = float(x[0])
        return out

    def _apply(self, params: dict) -> None:
        inner = self.env.unwrapped
        if hasattr(inner, "set_params"):
            inner.set_params(**params)  # the same env and cameras, another simulation
        else:
            self.env.close()
            self.env = self.build(**params)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if self._drawn is not None and self._steps > 0:
            self.sampler.observe(self._drawn, self._cost)
        if seed is None:
            seed = int(self._unseeded.integers(2**31))
        self._drawn = self.sampler.draw(np.random.default_rng([seed, RANDOMIZE_STREAM]))
        self._apply({r.key: r.value(x) for r, x in zip(self.ranges, self._drawn, strict=True)})
        self._steps, self._cost = 0, 0.0
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        self._cost += float(info["cost"])
        return obs, reward, terminated, truncated, info

    def state_dict(self) -> dict:
        """The sampler's memory of finished episodes (the running episode is replayed on resume)."""
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self._drawn = None  # the next reset replays the running episode; it is not a finished one


def check_options(sampler: str, candidates: int, explore: float, neighbours: int, memory: int) -> None:
    """The config's randomize.* sampler settings; InputError naming what is valid."""
    if sampler not in SAMPLERS:
        raise unknown("randomize.sampler", sampler, SAMPLERS)
    if candidates < 1 or neighbours < 1 or memory < neighbours:
        raise InputError("randomize.candidates and randomize.neighbours must be >= 1 and randomize.memory >= "
                         f"randomize.neighbours, got {candidates}, {neighbours}, {memory}")
    if not (math.isfinite(explore) and 0 <= explore <= 1):
        raise InputError(f"randomize.explore must be in [0, 1], got {explore}")


def make_randomized(name: str, ranges: dict, exclude: dict | None = None, sampler: str = "uniform",
                    seed: int | None = None, options: dict | None = None, **overrides) -> RandomizedEnv:
    """``envs.make(name, **overrides)`` with ``ranges`` redrawn every episode (``options``: the sampler's)."""
    import envs

    parsed = parse_ranges(ranges, exclude)
    env = RandomizedEnv(lambda **params: envs.make(name, **{**overrides, **params}), parsed,
                        make_sampler(parsed, sampler, **(options or {})), seed)
    if seed is not None:
        env.reset(seed=seed)
    return env
