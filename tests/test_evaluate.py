"""evaluate.py and slac/evaluation.py, slac/video.py on a smoke checkpoint of the toy env."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

import evaluate
from latent_adversary.run import make_evaluator
from slac import evaluation, video
from slac.errors import InputError
from slac.run import RunRequest, env_name_for, make_trainer

ROOT = Path(__file__).resolve().parent.parent
ENV = "toy-reach"
EPISODE_STEPS = 50  # toy-reach's time limit


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    request = RunRequest(phase="source", env=ENV, preset="smoke", seed=0, out=str(out))
    final = make_trainer(request, progress=False).run()
    (out / "final_eval.json").write_text(json.dumps(final))
    return out


@pytest.fixture(scope="module")
def evaluator(run_dir):
    return make_evaluator(run_dir, device="cpu")


def test_metrics_have_the_fields_and_consistent_values(evaluator):
    m = evaluation.evaluate(evaluator, episodes=2, seed=0)
    for key in ("checkpoint", "phase", "step", "env", "seed", "episodes", "budget", "return", "cost",
                "length", "violation_rate", "per_episode", "attack", "epsilon"):
        assert key in m, key
    assert m["phase"] == "source" and m["step"] == 200 and m["env"] == ENV and m["seed"] == 0
    assert m["attack"] == "none" and m["epsilon"] == 0.0
    episodes = m["per_episode"]
    assert len(episodes) == 2 and all(e["length"] == EPISODE_STEPS for e in episodes)
    returns, costs = np.array([e["return"] for e in episodes]), np.array([e["cost"] for e in episodes])
    assert m["return"]["mean"] == pytest.approx(returns.mean())
    assert m["cost"]["mean"] == pytest.approx(costs.mean())
    assert m["return"]["std"] == pytest.approx(returns.std(ddof=1))
    # 95 % t-interval with 1 degree of freedom: t = 12.706
    half = 12.7062047 * returns.std(ddof=1) / math.sqrt(2)
    assert m["return"]["ci95"] == pytest.approx([returns.mean() - half, returns.mean() + half], rel=1e-6)
    # toy-reach: 25 per 1000 simulator steps, 50 steps at action repeat 1
    assert m["budget"] == pytest.approx(25 * EPISODE_STEPS / 1000)
    assert m["violation_rate"] == pytest.approx(np.mean(costs > m["budget"]))
    assert [e["violation"] for e in episodes] == list(costs > m["budget"])
    json.dumps(m)  # serialisable as is


def test_reproduces_the_trainers_own_final_evaluation(run_dir, evaluator):
    """The trainer evaluates with the same env seeds (stream 1 of its run seed) and saves right after."""
    final = json.loads((run_dir / "final_eval.json").read_text())
    m = evaluation.evaluate(evaluator, episodes=evaluator.cfg.train.eval_episodes, seed=evaluator.cfg.seed)
    assert m["return"]["mean"] == pytest.approx(final["eval/return"], abs=1e-9)
    assert m["cost"]["mean"] == pytest.approx(final["eval/cost"], abs=1e-9)
    assert m["violation_rate"] == final["eval/violation_rate"] and m["budget"] == final["eval/budget"]


def test_summarize_against_hand_computed_values():
    results = [evaluation.EpisodeResult(k, k, r, c, 10) for k, (r, c) in enumerate([(1.0, 0.0), (3.0, 5.0),
                                                                                    (5.0, 2.0)])]
    m = evaluation.summarize(results, budget=2.0)
    assert m["return"]["mean"] == 3.0 and m["return"]["std"] == pytest.approx(2.0)
    half = 4.302653 * 2 / math.sqrt(3)  # t_{0.975, 2} * std / sqrt(n)
    assert m["return"]["ci95"] == pytest.approx([3 - half, 3 + half])
    assert m["violation_rate"] == pytest.approx(1 / 3)  # only 5 > 2; a cost equal to the budget is none
    # costs 0, 5, 2: mean 7/3, std 2.517; the t-interval's lower end (-3.92) is cut at 0, the upper kept
    cost_half = 4.302653 * np.std([0, 5, 2], ddof=1) / math.sqrt(3)
    assert 7 / 3 - cost_half < 0 and m["cost"]["ci95"] == pytest.approx([0.0, 7 / 3 + cost_half])
    one = evaluation.summarize(results[:1], budget=2.0)
    assert one["return"] == {"mean": 1.0, "std": 0.0, "ci95": None}


def test_same_seed_same_numbers_and_other_seed_differs(evaluator):
    a = evaluation.evaluate(evaluator, episodes=2, seed=3)
    b = evaluation.evaluate(evaluator, episodes=2, seed=3)
    assert a["per_episode"] == b["per_episode"]
    c = evaluation.evaluate(evaluator, episodes=2, seed=4)
    assert [e["seed"] for e in c["per_episode"]] != [e["seed"] for e in a["per_episode"]]


def test_stochastic_policy_is_reproducible_too(evaluator):
    a = evaluation.evaluate(evaluator, episodes=2, seed=1, deterministic=False)
    b = evaluation.evaluate(evaluator, episodes=2, seed=1, deterministic=False)
    assert a["per_episode"] == b["per_episode"]
    assert not a["deterministic"]


def test_workers_equal_serial(evaluator):
    serial = evaluation.evaluate(evaluator, episodes=3, seed=5, deterministic=False)
    parallel = evaluation.evaluate(evaluator, episodes=3, seed=5, deterministic=False, workers=2)
    assert parallel["per_episode"] == serial["per_episode"]
    assert parallel == serial


def test_video_reads_back_with_the_frame_count_and_size(evaluator, tmp_path):
    path = tmp_path / "v.mp4"
    m = evaluation.evaluate(evaluator, episodes=3, seed=0, video=path, video_episodes=2, overview_size=128,
                            workers=2)  # the video episodes run here, the third in a worker
    reader = imageio.get_reader(path)
    frames = [f for f in reader]
    reader.close()
    assert len(frames) == 2 * EPISODE_STEPS
    assert frames[0].shape == (video.HEADER + 128, 3 * 128, 3)
    assert m["video"] == str(path) and m["video_episodes"] == 2
    # recording does not change the episodes
    assert m["per_episode"] == evaluation.evaluate(evaluator, episodes=3, seed=0)["per_episode"]


def test_without_ffmpeg_the_video_falls_back_to_opencv(evaluator, tmp_path, monkeypatch):
    import cv2
    import imageio_ffmpeg

    def missing():
        raise RuntimeError("no ffmpeg")

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", missing)
    path = tmp_path / "v.mp4"
    with pytest.warns(UserWarning, match="pip install imageio-ffmpeg"), video.Mp4Writer(path) as writer:
        assert writer.codec == "mp4v"
        for frame in evaluator.frames(index=0, seed=0, overview_size=64)[:5]:
            writer.append(frame)
    capture = cv2.VideoCapture(str(path))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (
        3 * 64, video.HEADER + 64)
    capture.release()


def test_frames_for_tensorboard(evaluator):
    frames = evaluator.frames(index=1, seed=0, overview_size=64)
    assert frames.shape == (EPISODE_STEPS, video.HEADER + 64, 3 * 64, 3) and frames.dtype == np.uint8
    tb = video.tensorboard_video(frames)
    assert tb.shape == (1, EPISODE_STEPS, 3, video.HEADER + 64, 3 * 64)
    np.testing.assert_array_equal(tb[0, 7], frames[7].transpose(2, 0, 1))


def test_frame_panels_and_red_flash():
    obs = np.zeros((3, 64, 64), np.uint8)
    obs[1] = 200  # green observation
    recon = np.zeros((3, 64, 64), np.uint8)
    recon[2] = 200  # blue reconstruction
    overview = np.full((128, 128, 3), 90, np.uint8)
    kw = {"step": 3, "reward": 0.5, "episode_return": 1.0, "cost_so_far": 0.0}
    calm = video.compose_frame(obs, recon, overview, cost=0.0, **kw)
    hot = video.compose_frame(obs, recon, overview, cost=1.0, **kw)
    assert calm.shape == hot.shape == (video.HEADER + 128, 3 * 128, 3)
    mid = video.HEADER + 40
    assert tuple(calm[mid, 40]) == (0, 200, 0) and tuple(calm[mid, 128 + 40]) == (0, 0, 200)
    assert tuple(calm[mid, 256 + 40]) == (90, 90, 90)
    assert tuple(hot[2, 2]) == video.RED and tuple(calm[2, 2]) == (0, 0, 0)
    assert tuple(hot[video.HEADER + 1, 200]) == video.RED  # the border around the panels


def test_other_env_of_the_same_shape_and_shift_sides(run_dir):
    grey = make_evaluator(run_dir, env="toy-reach-grey", device="cpu")
    m = evaluation.evaluate(grey, episodes=1)
    assert m["env"] == "toy-reach-grey" and m["trained_env"] == ENV
    assert env_name_for(None, "toy-hazard-colour", "target") == "toy-reach-grey"
    assert env_name_for(None, "toy-hazard-colour", "source") == ENV
    assert env_name_for(None, None, "target") is None


# ------------------------------------------------------------------------------------------ CLI
def test_cli_writes_json_and_compares(run_dir, tmp_path, capsys):
    out = tmp_path / "deep" / "m.json"
    assert evaluate.main(["--checkpoint", str(run_dir), "--episodes", "2", "--device", "cpu",
                          "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "return mean" in printed and "violations" in printed
    m = json.loads(out.read_text())
    assert m["episodes"] == 2 and len(m["per_episode"]) == 2
    compare = tmp_path / "c.json"
    assert evaluate.main(["--compare", str(run_dir), str(run_dir / "checkpoints" / "step_000000100.pt"),
                          "--episodes", "2", "--device", "cpu", "--out", str(compare)]) == 0
    rows = json.loads(compare.read_text())["compare"]
    assert [r["step"] for r in rows] == [200, 100]
    assert rows[0]["per_episode"] == m["per_episode"]  # same env and seeds as the single run
    assert [e["seed"] for e in rows[0]["per_episode"]] == [e["seed"] for e in rows[1]["per_episode"]]


def _error(argv, capsys) -> str:
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_bad_input_is_one_clear_error(run_dir, tmp_path, capsys):
    assert "does not exist" in _error(["--checkpoint", str(tmp_path / "nope")], capsys)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    assert "corrupt" in _error(["--checkpoint", str(corrupt)], capsys)
    assert "no checkpoint in run directory" in _error(["--checkpoint", str(tmp_path)], capsys)
    assert "unknown env 'nope'" in _error(["--checkpoint", str(run_dir), "--env", "nope"], capsys)
    assert "unknown shift" in _error(["--checkpoint", str(run_dir), "--shift", "nope"], capsys)
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert "--out" in _error(["--checkpoint", str(run_dir), "--out", str(blocked / "m.json")], capsys)
    assert "is a directory" in _error(["--checkpoint", str(run_dir), "--video", str(tmp_path)], capsys)
    if Path("/proc/self").is_dir():  # a folder where nobody, root included, can create a file
        assert "not writable" in _error(["--checkpoint", str(run_dir), "--out", "/proc/self/m.json"], capsys)
    assert "--attack" in _error(["--checkpoint", str(run_dir), "--epsilon", "0.1"], capsys)
    assert "--epsilon" in _error(["--checkpoint", str(run_dir), "--attack", "random"], capsys)
    assert "--episodes" in _error(["--checkpoint", str(run_dir), "--episodes", "0"], capsys)


def test_env_that_does_not_fit_the_checkpoint(run_dir, tmp_path, capsys):
    state = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    state["env_spec"]["action_dim"] = 3
    bad = tmp_path / "three_actions.pt"
    torch.save(state, bad)
    err = _error(["--checkpoint", str(bad)], capsys)
    assert "does not fit env 'toy-reach'" in err and "action size is 3" in err


def test_cli_runs_as_a_script(run_dir, tmp_path):
    out = tmp_path / "m.json"
    argv = ["--checkpoint", str(run_dir), "--episodes", "1", "--device", "cpu", "--out", str(out)]
    proc = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), *argv], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["episodes"] == 1


# --------------------------------------------------------------------------------------- attacks
def test_attack_recorded_and_zero_epsilon_is_the_clean_run(evaluator):
    clean = evaluation.evaluate(evaluator, episodes=2, seed=2)
    for name in ("image-mc", "latent-mr"):
        zero = evaluation.evaluate(evaluator, episodes=2, seed=2, attack=evaluation.AttackSpec(name, 0.0, 2))
        assert zero["attack"] == name and zero["epsilon"] == 0.0 and zero["attack_steps"] == 2
        assert zero["per_episode"] == [{**e, "attack_objective_moved": 0.0} for e in clean["per_episode"]]
    random = evaluation.AttackSpec("random", 0.2, 1)
    noisy = evaluation.evaluate(evaluator, episodes=2, seed=2, attack=random, workers=2)
    assert noisy["attack"] == "random" and noisy["epsilon"] == 0.2
    assert noisy == evaluation.evaluate(evaluator, episodes=2, seed=2, attack=random)


def test_epsilon_sweep_writes_table_json_and_plot(run_dir, tmp_path, capsys):
    out = tmp_path / "sweep.json"
    argv = ["--checkpoint", str(run_dir), "--episodes", "2", "--device", "cpu", "--attack", "latent-mc",
            "--epsilon-sweep", "0,0.5", "--attack-steps", "1", "--out", str(out)]
    assert evaluate.main(argv) == 0
    rows = json.loads(out.read_text())["sweep"]
    assert [r["epsilon"] for r in rows] == [0.0, 0.5] and all(r["attack"] == "latent-mc" for r in rows)
    assert out.with_suffix(".png").stat().st_size > 0
    assert "epsilon" in capsys.readouterr().out
    assert "comma-separated" in _error(["--checkpoint", str(run_dir), "--attack", "random", "--epsilon-sweep",
                                        "0,x"], capsys)


def test_a_checkpoint_that_changes_under_the_workers_is_an_error(run_dir, tmp_path):
    path = tmp_path / "moving.pt"
    state = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    torch.save(state, path)
    evaluator = make_evaluator(path, device="cpu")
    state["counters"]["step"] += 100  # a run still training overwrites its latest.pt
    torch.save(state, path)
    with pytest.raises(InputError, match="changed while it was being evaluated"):
        evaluation.evaluate(evaluator, episodes=2, workers=2)


def test_tensorboard_gets_the_metrics_and_an_animated_video(run_dir, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = tmp_path / "tb"
    out = tmp_path / "m.json"
    assert evaluate.main(["--checkpoint", str(run_dir), "--episodes", "2", "--device", "cpu", "--tensorboard",
                          str(logdir), "--overview-size", "64", "--out", str(out)]) == 0
    prefix = json.loads(out.read_text())["tensorboard"]
    assert prefix == f"evaluate/{ENV}"
    events = EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert {f"{prefix}/return", f"{prefix}/cost", f"{prefix}/violation_rate"} <= set(events.Tags()["scalars"])
    (image,) = events.Images(f"{prefix}/video")
    assert image.step == 200 and image.encoded_image_string[:6] == b"GIF89a"
    gif = imageio.mimread(image.encoded_image_string, format="GIF")
    assert len(gif) == EPISODE_STEPS and gif[0].shape[:2] == ((video.HEADER + 64) // 2, 3 * 64 // 2)


def test_evaluating_a_best_pt_on_the_episodes_that_chose_it_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    make_trainer(RunRequest(phase="source", env="toy-reach", preset="smoke", seed=3, out=str(out),
                            sets=["train.keep_best_feasible=true", "train.eval_interval=50",
                                  "train.checkpoint_interval=50", "agent.budget=1e9"]), progress=False).run()
    assert (out / "checkpoints" / "best.pt").is_file()
    flags = {}
    for seed in (3, 4):  # the run's seed: its own evaluation episodes; another: fresh ones
        js = tmp_path / f"seed{seed}.json"
        assert evaluate.main(["--checkpoint", str(out), "--episodes", "2", "--seed", str(seed), "--out", str(js)]) == 0
        flags[seed] = (json.loads(js.read_text())["chose_checkpoint"], "chose this best.pt" in capsys.readouterr().out)
    assert flags == {3: (True, True), 4: (False, False)}
    latest = tmp_path / "latest.json"  # the last checkpoint was not chosen by anything
    assert evaluate.main(["--checkpoint", str(out / "checkpoints" / "latest.pt"), "--episodes", "1", "--seed", "3",
                          "--out", str(latest)]) == 0
    assert json.loads(latest.read_text())["chose_checkpoint"] is False
