"""evaluate.py --env-sweep (robustness curves): one evaluation per value of an env parameter, the robust
range, the JSON and the plot, and every bad input as one clear error (a smoke checkpoint of the toy env;
the dmc cartpole for the checks of keys and ranges, which run before any checkpoint loads)."""

import json

import pytest
import torch

import evaluate
from latent_adversary.run import make_evaluator
from slac import evaluation, report
from slac.errors import InputError

TILTED = ["--env", "dmc-cartpole-tilted"]


@pytest.fixture(scope="module")
def run_dir(smoke_source_run):
    return smoke_source_run


def _sweep(run_dir, tmp_path, *args: str) -> dict:
    out = tmp_path / "sweep.json"
    assert evaluate.main(["--checkpoint", str(run_dir), "--device", "cpu", "--out", str(out), *args]) == 0
    return json.loads(out.read_text())


def _error(argv: list[str], capsys) -> str:
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------- robustness figure
@pytest.mark.parametrize("values, costs, budget, expected", [
    ([1, 2, 3, 4], [0, 1, 2, 3], 2, (1, 3, 2)),  # within up to 3 (a cost equal to the budget is within)
    ([1, 2, 3, 4, 5, 6], [0, 9, 0, 0, 0, 9], 1, (3, 5, 2)),  # a gap: the wider run after it
    ([0, 1, 5, 6], [0, 0, 9, 0], 1, (0, 1, 1)),  # runs of 2 values (width 1) and 1 value (width 0)
    ([0, 10, 11, 12], [0, 9, 0, 0], 1, (11, 12, 1)),  # width counts, not the number of values
    ([4, 1, 3, 2], [0, 0, 0, 9], 1, (3, 4, 1)),  # unsorted: sorted by value first (2 is over)
    ([1, 2, 3], [9, 0, 9], 1, (2, 2, 0)),  # one value: width 0
    ([1, 2, 4, 5], [0, 0, 0, 0.5], [1, 1, 1, 0.1], (1, 4, 3)),  # one budget per value
    ([1, 2, 4, 5], [0, 9, 9, 0], 1, (1, 1, 0)),  # a tie: the lower run
])
def test_robust_range_by_hand(values, costs, budget, expected):
    lower, upper, width = expected
    assert report.robust_range(values, costs, budget) == {"lower": lower, "upper": upper, "width": width}


@pytest.mark.parametrize("values, costs, around, expected", [
    ([1, 2, 3, 4, 5, 6], [0, 9, 0, 0, 0, 9], 1, (1, 1, 0)),  # the run holding the env's value, not the widest
    ([1, 2, 3, 4, 5, 6], [0, 9, 0, 0, 0, 9], 4.4, (3, 5, 2)),  # the swept value nearest it: 4
    ([1, 2, 3, 4, 5, 6], [0, 9, 0, 0, 0, 9], 2, None),  # over budget there: no range, though 3-5 is within
    ([1, 2, 3, 4], [0, 0, 9, 0], 2.5, (1, 2, 1)),  # 2 and 3 equally near: the lower
    ([3, 1, 2], [0, 9, 0], 100, (2, 3, 1)),  # beyond the sweep: its nearest end
])
def test_robust_range_around_the_envs_own_value_by_hand(values, costs, around, expected):
    got = report.robust_range(values, costs, 1, around)
    assert got == (None if expected is None else dict(zip(("lower", "upper", "width"), expected, strict=True)))


def test_robust_range_none_within_and_rounding():
    assert report.robust_range([0.1, 0.2], [5.0, 6.0], 1.0) is None
    assert report.robust_range([0.1, 0.2, 0.3], [0, 0, 0], 1.0)["width"] == 0.2  # not 0.19999999999999998


def test_parse_env_sweep():
    assert report.parse_env_sweep(" pole_mass =0.4, 0.1,0.2") == ("pole_mass", [0.4, 0.1, 0.2])


# ------------------------------------------------------------------------------------------ sweeps
def test_one_result_per_value_equal_to_a_plain_evaluation(run_dir, tmp_path, capsys):
    sweep = _sweep(run_dir, tmp_path, "--env-sweep", "hazard_radius=0.3,0.05", "--episodes", "2")
    printed = capsys.readouterr().out
    assert "hazard_radius swept" in printed and "robust range of hazard_radius (" in printed
    assert "around the env's own 0.18" in printed
    assert sweep["key"] == "hazard_radius" and sweep["values"] == [0.3, 0.05] and sweep["env"] == "toy-reach"
    assert sweep["seed"] == 0 and sweep["episodes"] == 2 and sweep["budget"] == 25 * 50 / 1000
    results = sweep["results"]
    assert [r["env_overrides"] for r in results] == [{"hazard_radius": 0.3}, {"hazard_radius": 0.05}]
    assert sweep["env_value"] == 0.18  # toy-reach's own hazard radius, which the figure is anchored on
    assert sweep["robustness"] == report.robust_range(sweep["values"], [r["cost"]["mean"] for r in results],
                                                      sweep["budget"], 0.18)
    assert (tmp_path / "env_sweep_hazard_radius.png").stat().st_size > 0  # beside --out
    # the same value set in the checkpoint's own config, evaluated the plain way: the same numbers
    state = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    state["config"]["env_overrides"]["hazard_radius"] = 0.3
    torch.save(state, tmp_path / "radius.pt")
    plain = tmp_path / "plain.json"
    assert evaluate.main(["--checkpoint", str(tmp_path / "radius.pt"), "--episodes", "2", "--device", "cpu",
                          "--out", str(plain)]) == 0
    plain = json.loads(plain.read_text())
    for key in ("per_episode", "return", "cost", "violation_rate", "budget"):
        assert results[0][key] == plain[key], key
    assert results[1]["per_episode"] != plain["per_episode"]  # and the value matters


def test_overrides_reach_the_worker_processes(run_dir):
    radius = make_evaluator(run_dir, device="cpu").with_env_overrides(hazard_radius=0.3)
    serial = evaluation.evaluate(radius, episodes=2, seed=1)
    assert evaluation.evaluate(radius, episodes=2, seed=1, workers=2) == serial
    assert serial["env_overrides"] == {"hazard_radius": 0.3}


def test_a_parameter_that_changes_the_episode_changes_the_budget(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert evaluate.main(["--checkpoint", str(run_dir), "--device", "cpu", "--episodes", "1",
                          "--env-sweep", "time_limit=20,10"]) == 0
    assert "time_limit" in capsys.readouterr().out
    assert (tmp_path / "env_sweep_time_limit.png").stat().st_size > 0  # no --out: here
    sweep = _sweep(run_dir, tmp_path, "--env-sweep", "time_limit=20,10", "--episodes", "1",
                   "--attack", "random", "--epsilon", "0.1", "--plot", str(tmp_path / "p" / "curve.png"))
    assert sweep["values"] == [20, 10] and all(isinstance(v, int) for v in sweep["values"])
    assert sweep["budget"] == [0.5, 0.25]  # 25 per 1000 steps, one per value
    assert [r["length"]["mean"] for r in sweep["results"]] == [20, 10]
    assert sweep["attack"] == "random" and all(r["epsilon"] == 0.1 for r in sweep["results"])
    assert (tmp_path / "p" / "curve.png").stat().st_size > 0


# --------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("sweep, message", [
    ("pole_mass", "KEY=V1,V2,..."),
    ("=0.1,0.2", "KEY=V1,V2,..."),
    ("pole_mass=", "KEY=V1,V2,..."),
    ("pole_mass=0.3", "at least two values"),
    ("pole_mass=0.1,heavy", "comma-separated numbers"),
    ("pole_mass=0.1,nan", "finite numbers"),
    ("pole_mass=0.1,1e999", "finite numbers"),
    ("pole_mass=0.1,0.2,0.10", "pole_mass=0.1 more than once"),
    ("pole_mass=-1,0.2", "pole_mass=-1: override 'pole_mass' for env 'dmc-cartpole-tilted' must be > 0"),
    ("light_diffuse=0.5,2", "light_diffuse=2: override 'light_diffuse' for env 'dmc-cartpole-tilted' must be in"),
    ("mass=0.1,0.2", "has no parameter 'mass'; its numeric parameters: image_size"),
    ("body_rgba=0,1", "sweeps numeric parameters; 'body_rgba' of env 'dmc-cartpole-tilted' takes tuple"),
    ("fast_render=0,1", "'fast_render' of env 'dmc-cartpole-tilted' takes bool"),
    ("time_limit=10,10.5", "takes whole numbers, got 10.5"),
])
def test_bad_sweeps_err_before_the_checkpoint_loads(sweep, message, tmp_path, capsys):
    missing = str(tmp_path / "missing")  # loading it would be a different error
    assert message in _error(["--checkpoint", missing, *TILTED, "--env-sweep", sweep], capsys)


@pytest.mark.parametrize("extra, message", [
    (["--epsilon-sweep", "0,0.1", "--attack", "random"], "--epsilon-sweep and --env-sweep do not combine"),
    (["--video", "v.mp4"], "--video records one evaluation"),
    (["--tensorboard", "tb"], "--tensorboard records one evaluation"),
])
def test_flags_that_do_not_combine(extra, message, tmp_path, capsys):
    extra = [str(tmp_path / a) if a in ("v.mp4", "tb") else a for a in extra]
    argv = ["--checkpoint", str(tmp_path / "missing"), "--env-sweep", "pole_mass=0.1,0.2", *extra]
    assert message in _error(argv, capsys)
    argv = ["--compare", "a", "b", "--env-sweep", "pole_mass=0.1,0.2"]
    assert "--compare and --env-sweep do not combine" in _error(argv, capsys)


@pytest.mark.parametrize("sweep, message", [
    ("hazard", "env 'toy-reach' has no parameter 'hazard'; its numeric parameters: image_size, action_repeat, "
               "time_limit, hazard_radius, speed"),
    ("hazard_color", "'hazard_color' of env 'toy-reach' takes tuple"),
    ("image_size", "image_size=32: checkpoint"),  # the checkpoint does not fit: one clear error too
])
def test_keys_of_the_checkpoints_own_env(sweep, message, run_dir, capsys):
    values = "64,32" if sweep == "image_size" else "1,2"
    argv = ["--checkpoint", str(run_dir), "--device", "cpu", "--env-sweep", f"{sweep}={values}"]
    assert message in _error(argv, capsys)


def test_library_checks_raise_input_error():
    with pytest.raises(InputError, match="at least two values"):
        report.parse_env_sweep("gravity=9.81")
    assert evaluation.check_env_sweep("dmc-cartpole-tilted", "time_limit", [10.0, 20.0]) == [10, 20]
