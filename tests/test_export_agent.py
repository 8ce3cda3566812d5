"""Exported agents (scripts/export_agent.py): weights only, read without pickle, evaluated bitwise as
the run's checkpoint, fine-tuned with fresh optimisers, never resumed."""

import hashlib
import json

import pytest
import torch
from script_modules import load_script

import evaluate
from slac import checkpoint, config
from slac.errors import InputError
from slac.learner import build_learner, load_learner
from slac.logger import read_metrics
from slac.run import RunRequest, make_trainer
from slac.trainer import Trainer

export_agent = load_script("scripts", "export_agent")
SHIFT = "toy-hazard-colour"  # toy-reach -> toy-reach-grey


@pytest.fixture(scope="module")
def source_run(smoke_source_run):
    return smoke_source_run


@pytest.fixture(scope="module")
def agent_dir(source_run, tmp_path_factory):
    dest = tmp_path_factory.mktemp("agents") / "smoke"
    assert export_agent.main([str(source_run), str(dest)]) == 0
    return dest


def evaluate_json(checkpoint_path, out) -> dict:
    assert evaluate.main(["--checkpoint", str(checkpoint_path), "--episodes", "2", "--device", "cpu",
                          "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_the_agent_file_is_weights_only_and_loads_without_pickle(source_run, agent_dir):
    path = agent_dir / checkpoint.AGENT
    raw = torch.load(path, weights_only=True)  # no pickled objects: the safe unpickler reads all of it
    assert not {*checkpoint.RESUME_ENTRIES, "env"} & raw.keys(), "optimiser, RNG, logger or replay state kept"
    assert set(raw) == {"format_version", "phase", "architecture", "code_version", "config", "env_spec", "counters",
                        "source_checkpoint", "model", "agent", "exported_from"}
    run = checkpoint.load(source_run)
    for part in ("model", "agent"):
        assert raw[part].keys() == run[part].keys()
        for k, v in raw[part].items():
            assert v.dtype == run[part][k].dtype and torch.equal(v, run[part][k]), f"{part}.{k} differs"
    assert {"lagrangian.lam", "log_alpha", "critic_target.q1.net.0.weight"} <= raw["agent"].keys()
    assert raw["counters"] == run["counters"] and raw["config"] == run["config"]
    assert path.stat().st_size <= export_agent.MAX_BYTES
    assert sorted(p.name for p in agent_dir.iterdir()) == ["agent.pt", "card.json", "card.md"]


def test_a_folder_resolves_to_its_agent_and_a_run_directory_to_its_latest(source_run, agent_dir):
    assert checkpoint.resolve_path(agent_dir) == agent_dir / checkpoint.AGENT
    assert checkpoint.resolve_path(source_run) == source_run / "checkpoints" / checkpoint.LATEST


def test_evaluating_the_agent_is_bitwise_evaluating_the_run(source_run, agent_dir, tmp_path):
    from_run = evaluate_json(source_run, tmp_path / "run.json")
    from_agent = evaluate_json(agent_dir, tmp_path / "agent.json")
    assert from_agent["checkpoint"] == str(agent_dir / checkpoint.AGENT)
    from_run.pop("checkpoint"), from_agent.pop("checkpoint")
    assert from_agent == from_run  # every number, per episode too, to the last bit (JSON floats round-trip)


def test_fine_tuning_the_agent_starts_fresh_optimisers_from_the_same_zero_shot(source_run, agent_dir, tmp_path,
                                                                             capsys):
    def target(ckpt, out, steps):
        return make_trainer(RunRequest(phase="target", shift=SHIFT, checkpoint=str(ckpt), preset="smoke", seed=2,
                                       steps=steps, out=str(tmp_path / out)), progress=False)

    from_run = target(source_run, "from_run", 1)
    assert not from_run.fresh_optimizers and from_run.agent.optimizers["actor"].state_dict()["state"]
    saved = checkpoint.load(source_run)["model_optimizer"]["state"]
    loaded = from_run.model.optimizer.state_dict()["state"]
    assert all(torch.equal(saved[i]["exp_avg"], loaded[i]["exp_avg"]) for i in saved)  # as before: loaded
    assert "fresh" not in capsys.readouterr().out
    from_run.run()

    from_agent = target(agent_dir, "from_agent", 70)  # past the initial collection: pre-training and updates
    assert from_agent.fresh_optimizers
    assert not from_agent.model.optimizer.state_dict()["state"]
    assert all(not opt.state_dict()["state"] for opt in from_agent.agent.optimizers.values())
    assert "holds no optimiser states (an exported agent): fine-tuning starts with fresh Adam" in \
        capsys.readouterr().out
    before = {k: v.clone() for k, v in from_agent.model.state_dict().items()}
    from_agent.run()
    assert from_agent.counters["updates"] > 0 and from_agent.counters["model_updates"] > 0
    assert any(not torch.equal(v, before[k]) for k, v in from_agent.model.state_dict().items())

    zero_shot = [read_metrics(tmp_path / out / "metrics.jsonl")[0] for out in ("from_run", "from_agent")]
    assert "target/zero_shot_return" in zero_shot[0]
    assert zero_shot[0] == zero_shot[1]
    state = checkpoint.load(tmp_path / "from_agent")
    assert state["phase"] == "target" and state["source_checkpoint"] == str(agent_dir / checkpoint.AGENT)


def test_resuming_an_agent_is_refused_clearly_and_writes_nothing_into_its_folder(agent_dir, tmp_path):
    before = sorted(p.name for p in agent_dir.iterdir())
    with pytest.raises(InputError, match="cannot be resumed exactly: it lacks model_optimizer, agent_optimizers, "
                                         "rng.*it can still be evaluated or fine-tuned with --phase target"):
        make_trainer(RunRequest(resume=str(agent_dir)), progress=False)
    assert sorted(p.name for p in agent_dir.iterdir()) == before, "a lock file or other was left in the folder"
    # the trainer refuses it too, before building anything
    state = checkpoint.load(agent_dir)
    with pytest.raises(InputError, match="cannot be resumed exactly"):
        Trainer(config.from_dict(state["config"]), tmp_path / "run", state["phase"], resume_from=state,
                progress=False)


def test_one_optimiser_entry_without_the_other_is_damaged(source_run):
    state = checkpoint.load(source_run)
    del state["agent_optimizers"]
    model, agent = build_learner(config.from_dict(state["config"]), state["env_spec"], torch.device("cpu"))
    with pytest.raises(InputError, match="damaged: it holds model_optimizer but not agent_optimizers"):
        load_learner(state, model, agent)
    assert load_learner(state, model, agent, optimizers=False) is False


def test_the_card_names_source_commit_env_preset_and_the_runs_last_evaluation(source_run, agent_dir):
    card = json.loads((agent_dir / "card.json").read_text())
    state = checkpoint.load(source_run)
    assert card["commit"] == state["code_version"] and card["env"] == "toy-reach" and card["seed"] == 1
    assert card["source"]["checkpoint"] == str(source_run / "checkpoints" / checkpoint.LATEST)
    assert card["counters"]["step"] == 200 and card["phase"] == "source"
    path = agent_dir / checkpoint.AGENT
    assert card["size_bytes"] == path.stat().st_size
    assert card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    training = card["training"]
    assert training["preset"] == "smoke"
    assert training["command"] == ("python train.py --phase source --env toy-reach --preset smoke --seed 1 "
                                   f"--steps 200 --out {source_run}")
    last = [r for r in read_metrics(source_run / "metrics.jsonl") if "eval/return" in r][-1]
    assert card["final_training_evaluation"]["eval/return"] == last["eval/return"]
    assert card["final_training_evaluation"]["step"] == 200
    assert card["key_settings"]["image"] == "3x64x64" and card["key_settings"]["model.z2_dim"] == 32
    assert card["evaluation"] is None
    md = (agent_dir / "card.md").read_text()
    assert state["code_version"] in md and "toy-reach" in md and "--preset smoke" in md
    assert f"{last['eval/return']:.4g}" in md


def test_a_config_that_is_no_preset_is_given_by_its_config_file(source_run, tmp_path):
    state = checkpoint.load(source_run)
    state["config"]["model"]["lr"] = 1.234e-4  # as if run with --set model.lr=...: no preset gives it
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "config.yaml").write_text(__import__("yaml").safe_dump(state["config"], sort_keys=False))
    training = export_agent.training_command(state, tmp_path / "run")
    assert training["preset"] is None
    assert training["command"] == (f"python train.py --phase source --env toy-reach --config "
                                   f"{tmp_path / 'run' / 'config.yaml'} --out {tmp_path / 'run'}")
    assert export_agent.training_command(state, None)["command"] is None


def test_the_card_carries_an_evaluation_of_the_same_weights(source_run, agent_dir, tmp_path, capsys):
    metrics = evaluate_json(source_run, tmp_path / "eval.json")
    dest = tmp_path / "agents" / "with-eval"
    assert export_agent.main([str(source_run), str(dest), "--eval-json", str(tmp_path / "eval.json")]) == 0
    out = capsys.readouterr().out
    size = (dest / checkpoint.AGENT).stat().st_size
    assert f"({size / 1e6:.2f} MB, {size} bytes; limit 10 MB)" in out
    card = json.loads((dest / "card.json").read_text())
    e = card["evaluation"]
    assert e["return"] == metrics["return"] and e["cost"] == metrics["cost"]
    assert e["violation_rate"] == metrics["violation_rate"] and e["episodes"] == 2
    assert "violation rate" in (dest / "card.md").read_text()

    metrics["step"] = 100  # an evaluation of other weights
    (tmp_path / "other.json").write_text(json.dumps(metrics))
    assert export_agent.main([str(source_run), str(tmp_path / "agents" / "x"), "--eval-json",
                              str(tmp_path / "other.json")]) == 2
    assert "evaluated a checkpoint at step 100" in capsys.readouterr().err
    (tmp_path / "sweep.json").write_text(json.dumps({"sweep": [metrics]}))
    assert export_agent.main([str(source_run), str(tmp_path / "agents" / "x"), "--eval-json",
                              str(tmp_path / "sweep.json")]) == 2
    assert "is a sweep or comparison" in capsys.readouterr().err
    assert not (tmp_path / "agents" / "x").exists()


def test_an_agent_over_the_size_limit_is_refused_and_nothing_is_written(source_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(export_agent, "MAX_BYTES", 1_000_000)
    dest = tmp_path / "agents" / "big"
    assert export_agent.main([str(source_run), str(dest)]) == 2
    err = capsys.readouterr().err
    assert "error: the agent file would be 4." in err and "over the 1 MB limit" in err and "nothing was written" in err
    assert not dest.exists() and not list((tmp_path / "agents").iterdir())


def test_an_existing_folder_is_refused_without_force(source_run, agent_dir, tmp_path, capsys):
    dest = tmp_path / "agents" / "again"
    dest.mkdir(parents=True)
    assert export_agent.main([str(source_run), str(dest)]) == 2
    assert "already exists; give --force" in capsys.readouterr().err
    assert not list(dest.iterdir())
    (dest / "notes.txt").write_text("kept")
    assert export_agent.main([str(source_run), str(dest), "--force"]) == 0
    assert (dest / "notes.txt").read_text() == "kept"  # --force replaces the export's files, nothing else
    assert (dest / checkpoint.AGENT).read_bytes() == (agent_dir / checkpoint.AGENT).read_bytes()


@pytest.mark.parametrize("content, message", [
    (b"{}", "not a zip archive"),
    (None, "is not a checkpoint of this project"),
])
def test_a_file_that_is_not_this_projects_checkpoint_is_refused(tmp_path, content, message, capsys):
    path = tmp_path / "foreign.pt"
    if content is None:
        torch.save({"weights": torch.zeros(3)}, path)  # a torch file of someone else's
    else:
        path.write_bytes(content)
    assert export_agent.main([str(path), str(tmp_path / "agents" / "foreign")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "agents").exists()


def test_same_weights_takes_a_nan_for_a_nan():
    """The Lagrangian's last episode cost is NaN until a policy episode has ended: an early run exports."""
    nan = {"model": {"w": torch.tensor([1.0])}, "agent": {"lagrangian.previous_cost": torch.tensor(float("nan"))}}
    assert export_agent.same_weights(nan, {k: dict(v) for k, v in nan.items()})
    other = {"model": {"w": torch.tensor([1.0])}, "agent": {"lagrangian.previous_cost": torch.tensor(0.0)}}
    assert not export_agent.same_weights(nan, other)
