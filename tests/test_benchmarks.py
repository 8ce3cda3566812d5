"""The benchmarks' own logic: learner_throughput's pairing statistics and interleaving on made-up
timings, and preset_step_time's main on the smoke preset in toy-reach (CPU, seconds)."""

import re

import pytest
import torch
from script_modules import load_script


def load(name: str):
    return load_script("benchmarks", name)


def test_paired_stats_by_hand():
    lt = load("learner_throughput")
    a = [1.0, 2.0, 10.0]  # seconds per call of variant A in rounds 0, 1, 2
    b = [1.0, 6.0, 20.0]
    stats = lt.paired_stats(a, b)
    assert stats["a"] == (2.0, 1.0, 10.0)  # (median, min, max)
    assert stats["b"] == (6.0, 1.0, 20.0)
    # per-round ratios b/a: 1, 3, 2 -> median 2 (the ratio of the medians, 6/2 = 3, is not it)
    assert stats["ratio"] == pytest.approx((2.0, 1.0, 3.0))
    # an even number of rounds: the median is the mean of the middle two ratios (0.5, 1, 2, 4 -> 1.5)
    even = lt.paired_stats([2.0, 1.0, 1.0, 1.0], [1.0, 1.0, 2.0, 4.0])
    assert even["ratio"] == pytest.approx((1.5, 0.5, 4.0))
    assert even["a"] == (1.0, 1.0, 2.0)
    with pytest.raises(ValueError):
        lt.paired_stats([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        lt.paired_stats([], [])


def test_interleaved_alternates_the_variants():
    lt = load("learner_throughput")
    calls = []

    def measures(variant):
        return {m: (lambda m=m: calls.append((variant, m))) for m in ("model", "agent", "iteration")}

    times = lt.interleaved({"A": measures("A"), "B": measures("B")}, rounds=2, n=3, warmup=1,
                           device=torch.device("cpu"))
    assert {v: {m: len(t) for m, t in ts.items()} for v, ts in times.items()} == \
        {v: {"model": 2, "agent": 2, "iteration": 2} for v in "AB"}
    timed = calls[6:]  # after one warm-up call of each measure on each variant
    assert all(timed[i] == timed[i + 1] == timed[i + 2] for i in range(0, len(timed), 3))  # blocks of n = 3
    one_round = [("A", "model"), ("B", "model"), ("A", "agent"), ("B", "agent"), ("A", "iteration"),
                 ("B", "iteration")]
    assert timed[::3] == one_round * 2


def test_preset_step_time_smoke(capsys):
    pst = load("preset_step_time")
    fast = ["train.updates_per_step=0.1"]  # one model update per 10-step burst
    code = pst.main(["--presets", "smoke", "smoke", "--env", "toy-reach", "--fill", "20", "--block-steps", "10",
                     "--rounds", "2", "--set-a", *fast, "--set-b", *fast])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    last = re.fullmatch(r"smoke/smoke time per step: (\S+)", lines[-1])
    assert last, lines[-1]
    assert float(last.group(1)) > 0
    before = re.fullmatch(r"smoke/smoke time per step, min-max of the 2 per-round ratios: (\S+)-(\S+)", lines[-2])
    assert before, lines[-2]
    assert 0 < float(before.group(1)) <= float(last.group(1)) <= float(before.group(2))
    assert any(re.match(r"A = smoke: \d+\.\d+ ms per agent step", line) for line in lines)


def test_preset_step_time_unknown_preset(capsys):
    pst = load("preset_step_time")
    assert pst.main(["--presets", "no-such-preset", "smoke", "--env", "toy-reach"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown preset 'no-such-preset'" in err[0]
