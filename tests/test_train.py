"""End-to-end: smoke source run → checkpoint → smoke target run; resume; bad input."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from slac import checkpoint, config, provenance
from slac.errors import InputError
from slac.latent import to_float
from slac.logger import read_metrics
from slac.networks import native_bf16
from slac.run import RunRequest, make_trainer
from slac.rundir import RunLock
from slac.trainer import RunFailed, TrainingDiverged

ROOT = Path(__file__).resolve().parent.parent
SOURCE_ENV = "toy-reach"


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, equal_nan=True, msg=f"tensor {k} differs")


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("source")
    trainer = make_trainer(RunRequest(phase="source", env=SOURCE_ENV, preset="smoke", seed=1, out=str(out)),
                           progress=False)
    final = trainer.run()
    return out, final


def test_source_run_writes_everything_and_updates(source_run):
    out, final = source_run
    assert (out / "config.yaml").is_file() and (out / "checkpoints" / "latest.pt").is_file()
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    records = read_metrics(out / "metrics.jsonl")
    keys = set().union(*records)
    for key in ("loss/kl", "loss/image", "loss/reward", "loss/cost", "loss/critic", "loss/actor",
                "train/episode_return", "train/episode_cost", "eval/return", "eval/cost",
                "train/lifetime_cost", "perf/env_steps_per_s", "perf/updates_per_s", "perf/model_updates_per_s"):
        assert key in keys, f"{key} never logged"
    state = checkpoint.load(out)
    c = state["counters"]
    assert c["step"] == 200 and c["pretrained"] and c["updates"] > 0 and c["model_updates"] > c["updates"]
    assert set(final) >= {"eval/return", "eval/cost", "eval/violation_rate"}
    collection = state["config"]["train"]["initial_collection_steps"]
    assert all(r["step"] >= collection for r in records if "eval/return" in r), "no evaluation of random actions"


def test_step_rule_moves_lambda_at_every_policy_step(tmp_path):
    """smoke uses Safe SLAC's 'step' rule: λ moves once per policy step, never while acting at random."""
    trainer = make_trainer(RunRequest(phase="source", env=SOURCE_ENV, preset="smoke", seed=1, steps=80,
                                      out=str(tmp_path)), progress=False)
    seen = []
    observe = trainer.agent.lagrangian.observe_step
    trainer.agent.lagrangian.observe_step = lambda cost: seen.append(cost) or observe(cost)
    trainer.run()
    cfg = trainer.cfg.train
    assert len(seen) == cfg.steps - cfg.initial_collection_steps
    assert trainer.agent.lagrangian.value != trainer.cfg.agent.init_lagrange


def test_several_agent_updates_follow_each_model_update(tmp_path):
    trainer = make_trainer(RunRequest(phase="source", env=SOURCE_ENV, preset="smoke", seed=1, steps=100,
                                      sets=["train.agent_updates_per_model_update=3"], out=str(tmp_path)),
                           progress=False)
    pretraining = trainer.cfg.train.initial_learning_steps
    trainer.run()
    c = trainer.counters
    assert c["model_updates"] > pretraining and c["updates"] == 3 * (c["model_updates"] - pretraining)
    with pytest.raises(InputError, match="agent_updates_per_model_update"):
        config.resolve("smoke", sets=["train.agent_updates_per_model_update=0"])


def test_split_agent_batch_deals_one_filtered_batch_out_to_the_updates(tmp_path):
    trainer = make_trainer(RunRequest(phase="source", env=SOURCE_ENV, preset="smoke", seed=1, steps=100,
                                      sets=["train.agent_updates_per_model_update=3",
                                            "train.split_agent_batch=true"], out=str(tmp_path)),
                           progress=False)
    batches, seen = [], []
    agent_batch, agent_update = trainer.agent_batch, trainer.agent.update

    def count_batches():
        batches.append(agent_batch())
        return batches[-1]

    def record_inputs(b):
        seen.append(torch.cat([b.z, b.action, b.reward[:, None], b.cost[:, None], b.next_z], dim=1))
        return agent_update(b)

    trainer.agent_batch, trainer.agent.update = count_batches, record_inputs
    pretraining = trainer.cfg.train.initial_learning_steps
    trainer.run()
    model_updates = trainer.counters["model_updates"] - pretraining
    assert model_updates > 1 and len(batches) == model_updates and len(seen) == 3 * model_updates
    for i, (x, _) in enumerate(batches):  # the three updates' rows: the batch's rows, each once, intact
        whole = torch.cat([x.z, x.action, x.reward[:, None], x.cost[:, None], x.next_z], dim=1)
        shares = seen[3 * i:3 * i + 3]
        assert all(len(share) > 0 for share in shares)
        dealt = torch.cat(shares)
        assert sorted(map(tuple, dealt.tolist())) == sorted(map(tuple, whole.tolist()))
    with pytest.raises(InputError, match="split_agent_batch"):
        config.resolve("smoke", sets=["train.split_agent_batch=true", "train.agent_updates_per_model_update=100000"])


def test_pretraining_filters_the_running_episode_again_with_the_trained_model(tmp_path):
    """The filter state carried through the random collection came from the untrained model (left
    as it was, a scratch run's latent grew x2 per step to inf in its first policy episode); after
    pre-training the policy acts on the trained model's filtering of the episode's frames so far."""
    trainer = make_trainer(RunRequest(phase="source", env=SOURCE_ENV, preset="smoke", seed=1, steps=70,
                                      sets=["agent.latent_input=mean", "model.bf16_convs=false"],
                                      out=str(tmp_path)), progress=False)
    seen = {}
    pretrain = trainer.pretrain_model

    def pretrain_and_record():
        before = trainer.policy.state["z"].clone()
        done = pretrain()
        frames, actions = trainer.buffer.current_episode()
        with torch.no_grad():  # the batched training-time filter over the whole episode, means only
            post = trainer.model.filter_sequence(trainer.model.encode(to_float(torch.as_tensor(frames)[None])),
                                                 torch.as_tensor(actions)[None], sample=False, prior=False)
        seen.update(before=before, after=trainer.policy.state["z"].clone(), length=len(actions),
                    expected=torch.cat([post["z1"][:, -1], post["z2"][:, -1]], dim=-1))
        return done

    trainer.pretrain_model = pretrain_and_record
    trainer.run()
    assert seen["length"] == 10  # pre-training at step 60, 10 steps into the second 50-step episode
    torch.testing.assert_close(seen["after"], seen["expected"], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(seen["before"], seen["after"])


def test_a_diverged_filter_stops_the_run_with_one_clear_error(tmp_path):
    trainer = make_trainer(RunRequest(phase="source", env=SOURCE_ENV, preset="smoke", seed=1, steps=100,
                                      out=str(tmp_path)), progress=False)
    observe = trainer.policy.observe

    def observe_then_blow_up(action, obs):  # the filter's latent overflows at step 80
        observe(action, obs)
        if trainer.counters["step"] == 80:
            trainer.policy.state = {k: v * torch.inf for k, v in trainer.policy.state.items()}

    trainer.policy.observe = observe_then_blow_up
    with pytest.raises(TrainingDiverged, match=r"action is not finite at step 80: the online filter's latent state "
                                               r"diverged \(max \|z\| = (inf|nan)\); stopped without saving"):
        trainer.run()
    assert not (tmp_path / "checkpoints" / checkpoint.LATEST).exists()  # none before step 100


def test_target_run_starts_from_the_source_weights(source_run, tmp_path):
    src, _ = source_run
    source_state = checkpoint.load(src)
    out = tmp_path / "target"
    trainer = make_trainer(RunRequest(phase="target", env=SOURCE_ENV, checkpoint=str(src), preset="smoke",
                                      seed=2, out=str(out)), progress=False)
    assert_same_tensors(trainer.model.state_dict(), source_state["model"])
    assert_same_tensors(trainer.agent.state_dict(), source_state["agent"])
    assert trainer.agent.optimizers["actor"].state_dict()["state"], "optimiser state not restored"
    trainer.run()
    records = read_metrics(out / "metrics.jsonl")
    first = records[0]
    assert first["step"] == 0 and "target/zero_shot_return" in first and "target/zero_shot_cost" in first
    # one name for the lifetime cost: in a target run train/lifetime_cost is the lifetime target cost
    lifetime = [r["train/lifetime_cost"] for r in records if "train/lifetime_cost" in r]
    assert lifetime and all(b >= a for a, b in zip(lifetime, lifetime[1:], strict=False))
    assert not any("target/lifetime_cost" in r for r in records)
    target_state = checkpoint.load(out)
    assert target_state["phase"] == "target" and target_state["source_checkpoint"].endswith("latest.pt")
    # fine-tuning changed the weights it loaded
    moved = [k for k, v in target_state["model"].items() if not torch.equal(v, source_state["model"][k])]
    assert moved, "target phase did not update the model"


def flat_tensors(state, prefix=""):
    """Every tensor (and number) in a nested checkpoint entry, by path."""
    if isinstance(state, dict):
        return {k: v for key, sub in state.items() for k, v in flat_tensors(sub, f"{prefix}{key}/").items()}
    if isinstance(state, (list, tuple)):
        return {k: v for i, sub in enumerate(state) for k, v in flat_tensors(sub, f"{prefix}{i}/").items()}
    return {prefix: state}


def assert_same_run(a: Path, b: Path) -> None:
    """Bitwise the same weights, optimiser states, counters, RNG, replay and metrics (timings apart)."""
    sa, sb = checkpoint.load(a), checkpoint.load(b)
    for key in ("model", "agent", "model_optimizer", "agent_optimizers", "counters", "rng", "update_credit"):
        fa, fb = flat_tensors(sa[key]), flat_tensors(sb[key])
        assert fa.keys() == fb.keys(), key
        for k in fa:
            same = (torch.equal(fa[k].nan_to_num(), fb[k].nan_to_num()) and torch.equal(fa[k].isnan(), fb[k].isnan())
                    if isinstance(fa[k], torch.Tensor) else fa[k] == fb[k])
            assert same, f"{key} {k} differs"
    ra = checkpoint.load_replay(a / "checkpoints" / sa["replay_file"])
    rb = checkpoint.load_replay(b / "checkpoints" / sb["replay_file"])
    assert all(np.array_equal(ra[k], rb[k]) for k in checkpoint.REPLAY_KEYS)
    untimed = lambda run: [{k: v for k, v in r.items() if not (k.startswith("perf/") or k.endswith("_ms"))}  # noqa: E731
                           for r in read_metrics(run / "metrics.jsonl")]
    ma, mb = untimed(a), untimed(b)
    assert len(ma) == len(mb) and ma == mb


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """A 200-step smoke run of seed 5, never interrupted."""
    out = tmp_path_factory.mktemp("straight") / "run"
    make_trainer(RunRequest(phase="source", env=SOURCE_ENV, preset="smoke", seed=5, out=str(out)),
                 progress=False).run()
    return out


@pytest.mark.parametrize("stop_at", [77, 100])  # mid-episode after updates began; at a checkpoint and an episode end
def test_interrupted_and_resumed_run_is_bitwise_the_straight_run(straight_run, tmp_path, stop_at):
    out = tmp_path / "run"
    trainer = make_trainer(RunRequest(phase="source", env=SOURCE_ENV, preset="smoke", seed=5, out=str(out)),
                           progress=False)
    stop_after_step(trainer, stop_at)
    trainer.run()
    assert checkpoint.load(out)["counters"]["step"] == stop_at
    make_trainer(RunRequest(resume=str(out)), progress=False).run()
    assert_same_run(straight_run, out)
    # each start left a record of the code and machine it computed with, at the step it started from
    starts = provenance.read(out)
    assert [r["step"] for r in starts] == [0, stop_at]
    assert all(r["code_version"] == checkpoint.code_version() and r["torch"] == torch.__version__
               and r["device"] == "cpu" and r["native_bf16"] == native_bf16("cpu") and r["cpu"] for r in starts)


def stop_after_step(trainer, step: int) -> None:
    """Make ``trainer`` receive a SIGTERM while it takes agent step ``step`` (it saves there and stops)."""
    env_step = trainer.env.step

    def step_then_interrupt(action):
        if trainer.counters["step"] == step - 1:
            trainer.request_stop(signal.SIGTERM)
        return env_step(action)

    trainer.env.step = step_then_interrupt


BEST_SETS = ["train.keep_best_feasible=true", "train.eval_interval=50", "train.checkpoint_interval=50"]


def test_best_feasible_rule_on_given_evaluations(tmp_path):
    trainer = make_trainer(RunRequest(phase="source", env=SOURCE_ENV, preset="smoke", seed=1, out=str(tmp_path / "r"),
                                      sets=BEST_SETS), progress=False)
    evaluation = lambda ret, cost: {"eval/return": ret, "eval/cost": cost, "eval/budget": 25.0}  # noqa: E731
    for step, ret, cost, kept in [(100, 50.0, 25.5, False),  # over the budget, whatever its return
                                  (150, 10.0, 25.0, True),   # at the budget counts as within it
                                  (200, 9.0, 0.0, False),    # a lower return
                                  (250, 10.0, 3.0, True),    # a tie goes to the later checkpoint
                                  (300, 60.0, 40.0, False)]:
        trainer.counters["step"] = step
        assert trainer._new_best_feasible(evaluation(ret, cost)) is kept, step
    assert (trainer.counters["best_feasible_step"], trainer.counters["best_feasible_return"]) == (250, 10.0)
    trainer.phase = "target"  # evaluation episodes in a target would be real ones: no choice there
    assert not trainer._new_best_feasible(evaluation(99.0, 0.0))
    trainer.phase, trainer.cfg.train.keep_best_feasible = "source", False
    assert not trainer._new_best_feasible(evaluation(99.0, 0.0))
    trainer.lock.release()


def test_best_pt_is_the_best_kept_evaluation_and_a_resume_keeps_choosing_it(tmp_path, capsys):
    """A budget no episode reaches makes every evaluation feasible: best.pt is the kept checkpoint with
    the highest evaluation return in metrics.jsonl, and train.py says so at the end. A run directory
    then means best.pt; --resume continues latest.pt, and a run stopped after its first best.pt and
    resumed chooses the same one."""
    import train

    sets = [*BEST_SETS, "agent.budget=1e9"]
    out = tmp_path / "straight"
    assert train.main(["--phase", "source", "--env", SOURCE_ENV, "--preset", "smoke", "--seed", "1", "--no-progress",
                       "--out", str(out), "--set", *sets]) == 0
    printed = capsys.readouterr().out
    resumed_out = tmp_path / "resumed"
    trainer = make_trainer(RunRequest(phase="source", env=SOURCE_ENV, preset="smoke", seed=1, out=str(resumed_out),
                                      sets=sets), progress=False)
    stop_after_step(trainer, 130)
    trainer.run()
    assert (resumed_out / "checkpoints" / checkpoint.BEST).is_file()
    make_trainer(RunRequest(resume=str(resumed_out)), progress=False).run()

    returns = {r["step"]: r["eval/return"] for r in read_metrics(out / "metrics.jsonl") if "eval/return" in r}
    assert len(returns) >= 3 and all(step % 50 == 0 for step in returns)  # each evaluation has a kept checkpoint
    expected = max(returns, key=lambda step: (returns[step], step))
    best = checkpoint.load(out)
    assert Path(best["path"]).name == checkpoint.BEST and best["counters"]["step"] == expected
    assert best["counters"]["best_feasible_step"] == expected
    assert_same_tensors(best["model"], checkpoint.load(out / "checkpoints" / f"step_{expected:09d}.pt")["model"])
    assert checkpoint.load(out, latest=True)["counters"]["step"] == 200
    assert f"checkpoints/best.pt, step {expected}, evaluation return {returns[expected]:.1f}" in printed
    resumed = checkpoint.load(resumed_out)
    assert resumed["counters"] == best["counters"]
    assert_same_tensors(resumed["agent"], best["agent"])


def test_stopped_in_model_pretraining_and_resumed_is_bitwise_the_straight_run(straight_run, tmp_path):
    out = tmp_path / "run"
    trainer = make_trainer(RunRequest(phase="source", env=SOURCE_ENV, preset="smoke", seed=5, out=str(out)),
                           progress=False)
    update_model = trainer.update_model

    def update_then_interrupt():  # a SIGTERM arriving during the 4th pre-training update
        if trainer.counters["model_updates"] == 3:
            trainer.request_stop(signal.SIGTERM)
        return update_model()

    trainer.update_model = update_then_interrupt
    trainer.run()
    assert not checkpoint.load(out)["counters"]["pretrained"]
    make_trainer(RunRequest(resume=str(out)), progress=False).run()
    assert_same_run(straight_run, out)


def test_sigkill_at_a_random_step_then_resume_is_bitwise_the_straight_run(straight_run, tmp_path):
    """A subprocess killed with SIGKILL (no handler runs) after its first checkpoint, resumed from it."""
    out = tmp_path / "run"
    command = [sys.executable, "train.py", "--env", SOURCE_ENV, "--preset", "smoke", "--seed", "5", "--no-progress"]
    proc = subprocess.Popen([*command, "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    latest = out / "checkpoints" / "latest.pt"
    deadline = time.time() + 120
    while not latest.exists():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(np.random.default_rng().uniform(0.0, 2.0))  # somewhere after the first checkpoint
    proc.kill()
    proc.wait()
    assert latest.exists()
    resumed = subprocess.run([sys.executable, "train.py", "--resume", str(out), "--no-progress"], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert not list((out / "checkpoints").glob(".*tmp*")), "temp files of the killed writer are left"
    assert len(list((out / "checkpoints").glob("replay*.npz"))) == 1
    assert_same_run(straight_run, out)


def test_resume_changes_only_what_does_not_change_the_run(source_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(source_run[0], out)
    saved = checkpoint.load(out)["config"]
    resumed = make_trainer(RunRequest(resume=str(out), sets=["train.threads=1"]), progress=False)
    assert resumed.cfg.train.threads == 1
    saved["train"]["threads"] = 1
    assert config.to_dict(resumed.cfg) == saved
    with pytest.raises(InputError, match="agent.lr cannot change on --resume.*train.threads"):
        make_trainer(RunRequest(resume=str(out), sets=["agent.lr=1e-3"]), progress=False)
    with pytest.raises(InputError, match="--seed, --out cannot be given"):
        make_trainer(RunRequest(resume=str(out), seed=5, out=str(tmp_path / "other")), progress=False)
    with pytest.raises(InputError, match="--phase cannot be given"):
        make_trainer(RunRequest(resume=str(out), phase="target"), progress=False)
    with pytest.raises(InputError, match="--set expects key=value"):
        make_trainer(RunRequest(resume=str(out), sets=["train.threads"]), progress=False)


def test_sigterm_saves_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "train.py", "--env", SOURCE_ENV, "--preset", "smoke",
                             "--steps", "100000", "--set", "train.log_interval=10", "--no-progress",
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text():
        assert time.time() < deadline and proc.poll() is None, proc.communicate()[0]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, output  # saved, but not finished: a wrapper must not count it done
    assert "--resume" in output
    assert checkpoint.load(out)["counters"]["step"] > 0


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", "--no-progress", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["--env", "nope", "--out", "x"], "unknown env 'nope'; valid:"),
    (["--shift", "nope", "--out", "x"], "unknown shift 'nope'; valid:"),
    (["--env", SOURCE_ENV, "--set", "agent.lrr=1", "--out", "x"], "unknown config key 'agent.lrr'"),
    (["--phase", "target", "--env", SOURCE_ENV, "--out", "x"], "--phase target needs --checkpoint"),
    (["--phase", "target", "--env", SOURCE_ENV, "--checkpoint", "missing_dir", "--out", "x"],
     "does not exist"),
    (["--env", SOURCE_ENV], "--out DIR is required"),
])
def test_bad_command_lines_are_one_clear_error(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_cuda_without_cuda_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InputError, match="CUDA is not available"):
        make_trainer(RunRequest(env=SOURCE_ENV, preset="smoke", device="cuda", out=str(tmp_path)))


def test_checkpoint_that_does_not_fit_names_both_sides(source_run, tmp_path):
    src, _ = source_run
    with pytest.raises(InputError, match=r"model.z2_dim=32 but the config asks model.z2_dim=16"):
        make_trainer(RunRequest(phase="target", env=SOURCE_ENV, checkpoint=str(src), preset="smoke",
                                sets=["model.z2_dim=16"], out=str(tmp_path / "t")))
    shapes = r"observation shape is \[3, 64, 64\] but the env's is \[3, 32, 32\]"
    with pytest.raises(InputError, match=shapes):
        make_trainer(RunRequest(phase="target", env=SOURCE_ENV, checkpoint=str(src), preset="smoke",
                                sets=["env_overrides.image_size=32"], out=str(tmp_path / "u")))


def test_existing_run_directory_is_not_overwritten(source_run):
    src, _ = source_run
    with pytest.raises(InputError, match="already holds a run; continue it with --resume"):
        make_trainer(RunRequest(env=SOURCE_ENV, preset="smoke", out=str(src)))


def test_resolved_config_is_saved(source_run):
    src, _ = source_run
    text = (src / "config.yaml").read_text()
    assert "env: toy-reach" in text and "seed: 1" in text
    assert json.loads(json.dumps(checkpoint.load(src)["config"]))["env"] == SOURCE_ENV


def test_checkpoint_of_another_network_structure_is_refused(source_run, tmp_path):
    src, _ = source_run
    state = checkpoint.load(src)
    assert len(state["architecture"]) == 16 and state["code_version"]
    state["architecture"] = "0" * 16  # as if an activation had changed in the code since
    state["code_version"] = "abc1234"
    del state["path"]
    checkpoint.save(tmp_path / "old.pt", state)
    with pytest.raises(InputError, match="written by networks of another structure.*commit abc1234"):
        make_trainer(RunRequest(phase="target", env=SOURCE_ENV, checkpoint=str(tmp_path / "old.pt"),
                                preset="smoke", out=str(tmp_path / "t")))


def test_set_takes_several_overrides_and_repeats():
    sys.path.insert(0, str(ROOT))
    from train import parse_args

    request, _ = parse_args(["--env", SOURCE_ENV, "--set", "agent.tau=0.01", "model.lr=3e-4",
                             "--set", "train.steps=5", "--out", "x"])
    assert request.sets == ["agent.tau=0.01", "model.lr=3e-4", "train.steps=5"]


def test_read_metrics_drops_the_records_a_resume_replaced(tmp_path):
    # a run logged steps 0..300, was killed, and resumed from its checkpoint at step 200
    lines = [{"step": 0, "a": 0}, {"step": 100, "a": 1}, {"step": 200, "a": 2}, {"step": 200, "eval": 5},
             {"step": 300, "a": 3}, {"step": 250, "a": 4}, {"step": 300, "a": 5}, {"step": 400, "a": 6}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    kept = read_metrics(path)
    assert kept == lines[:4] + lines[5:]


# ------------------------------------------------------------------ the run directory
def test_a_second_run_on_a_locked_directory_is_refused_with_the_holders_pid(tmp_path):
    out = tmp_path / "run"
    holder = RunLock(out)
    try:
        with pytest.raises(InputError, match=rf"in use by another run \(PID {os.getpid()}\)"):
            make_trainer(RunRequest(env=SOURCE_ENV, preset="smoke", out=str(out)), progress=False)
        with pytest.raises(InputError, match="in use by another run"):
            RunLock(out)
    finally:
        holder.release()
    make_trainer(RunRequest(env=SOURCE_ENV, preset="smoke", out=str(out)), progress=False).close()


def test_two_runs_started_together_on_one_directory_one_is_refused(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "train.py", "--env", SOURCE_ENV, "--preset", "smoke", "--steps", "70",
               "--no-progress", "--out", str(out)]
    procs = [subprocess.Popen([*command, "--seed", str(seed)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "in use by another run" in refused or "already holds a run" in refused, refused
    seeds = {checkpoint.load(path)["config"]["seed"] for path in (out / "checkpoints").glob("*.pt")}
    assert len(seeds) == 1, "the directory mixes two runs"


def test_leftovers_of_a_run_without_checkpoint_are_refused_or_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 50}\n')
    (out / "config.yaml").write_text("seed: 1\n")
    with pytest.raises(InputError, match="wrote no checkpoint .*--overwrite"):
        make_trainer(RunRequest(env=SOURCE_ENV, preset="smoke", out=str(out)), progress=False)
    trainer = make_trainer(RunRequest(env=SOURCE_ENV, preset="smoke", out=str(out), overwrite=True), progress=False)
    trainer.close()
    assert not (out / "metrics.jsonl").read_text(), "the old metrics were not deleted"
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a run's"):
        make_trainer(RunRequest(env=SOURCE_ENV, preset="smoke", out=str(out), overwrite=True), progress=False)


@pytest.mark.parametrize("make_out, message", [
    (lambda tmp: "", "--out .. is empty"),
    (lambda tmp: (tmp / "file").write_text("x") and str(tmp / "file"), "is a file, not a directory"),
    (lambda tmp: (tmp / "file").write_text("x") and str(tmp / "file" / "run"), "cannot create or write"),
])
def test_bad_out_is_refused_before_anything_is_written(tmp_path, make_out, message):
    with pytest.raises(InputError, match=message):
        make_trainer(RunRequest(env=SOURCE_ENV, preset="smoke", out=make_out(tmp_path)), progress=False)
    assert not any((ROOT / name).exists() for name in (".lock", "checkpoints", "metrics.jsonl", "config.yaml"))


def test_resume_steps_below_the_runs_step_are_refused(source_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(source_run[0], out)
    before = (out / "config.yaml").read_text()
    for steps in (-5, 0, 150):
        with pytest.raises(InputError, match=f"--steps {steps} is below the 200 steps"):
            make_trainer(RunRequest(resume=str(out), steps=steps), progress=False)
    assert (out / "config.yaml").read_text() == before


def test_a_full_disk_is_one_clear_message_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    trainer = make_trainer(RunRequest(env=SOURCE_ENV, preset="smoke", seed=3, out=str(out)), progress=False)
    real_write = checkpoint.atomic_write

    def full_after_first(path, write):  # the disk fills up after the checkpoint at step 100
        if "000000200" in Path(path).name:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, write)

    monkeypatch.setattr(checkpoint, "atomic_write", full_after_first)
    with pytest.raises(RunFailed, match="the disk is full at step 200 .*are intact: free space, then"):
        trainer.run()
    monkeypatch.setattr(checkpoint, "atomic_write", real_write)
    state = checkpoint.load(out)
    assert state["counters"]["step"] == 100 and (out / "checkpoints" / state["replay_file"]).is_file()
    make_trainer(RunRequest(resume=str(out)), progress=False).run()  # resumes from the last good one


def test_sigterm_while_starting_up_saves_at_step_zero(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "train.py", "--env", SOURCE_ENV, "--preset", "smoke", "--no-progress",
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.5)  # inside the imports
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "stopped by signal 15 at step 0" in output and "--resume" in output
    assert checkpoint.load(out)["counters"]["step"] == 0


def test_provenance_keeps_each_start_and_leaves_out_a_torn_line(tmp_path):
    first = provenance.record(tmp_path, 0, torch.device("cpu"), "abc1234")
    with open(tmp_path / provenance.FILE, "a") as f:
        f.write('{"started": "2026-')  # a kill while the next start wrote its line
    assert provenance.read(tmp_path) == [first]
    resumed = provenance.record(tmp_path, 100, torch.device("cpu"), "abc1234")  # begins a line of its own
    assert provenance.read(tmp_path) == [first, resumed]
    assert provenance.read(tmp_path / "no-such-run") == []
