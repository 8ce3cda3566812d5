"""Export a trained agent for shipping in the repository: its weights alone, and a card that says what it is.

    python scripts/export_agent.py RUN_DIR_OR_PT agents/NAME [--eval-json FILE] [--force]

RUN_DIR_OR_PT is a run directory (its ``checkpoints/best.pt`` if it kept one, else ``latest.pt``) or
one checkpoint file of it (e.g. ``checkpoints/step_000006000.pt``). The export writes into ``agents/NAME/``:

- ``agent.pt``: the checkpoint's phase, config, env spec, counters, and the model's and the
  agent's network states (actor, critics and their targets, α, λ and its rule's state), as the run
  saved them (float32, bitwise): the same format as a run checkpoint, read the same pickle-free way
  (``torch.load(weights_only=True)`` in ``slac.checkpoint.load``), so one loader serves both. It
  holds no optimiser, RNG, logger, replay or episode state: it can be evaluated and fine-tuned, not
  resumed. At most 10 MB (``MAX_BYTES``); a larger one is refused and nothing is written.
- ``card.md`` and ``card.json``: the source checkpoint and run directory, the commit that trained
  it, the training command (a run does not record its command line: it is rebuilt from the saved
  config, with the preset if the config is exactly one preset's with --env/--seed/--steps/--device
  on top, else with the run's own config.yaml; each checked by resolving it again), the env, seed,
  steps, the config's key settings, the run's last training evaluation before the checkpoint's step
  (metrics.jsonl), and, with ``--eval-json FILE`` (``evaluate.py --checkpoint ... --out FILE``, one
  evaluation of the same weights), that evaluation's return, cost, violation rate and episodes.

An existing ``agents/NAME`` is refused unless ``--force`` (which replaces these three files and
nothing else). Use the exported agent as a run directory:

    python evaluate.py --checkpoint agents/NAME [--shift S --side target] --out eval.json
    python train.py --phase target --checkpoint agents/NAME --shift S --out runs/NAME-S

Fine-tuning from it starts fresh Adam optimisers (a run's own checkpoint carries its Adam
states), so it is not bitwise the fine-tune of the run's checkpoint; evaluation is.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from slac import checkpoint, config  # noqa: E402
from slac.errors import InputError  # noqa: E402
from slac.logger import read_metrics  # noqa: E402

MAX_BYTES = 10_000_000  # 10 MB: the most an agent file shipped in the repository may weigh
CARD_MD, CARD_JSON = "card.md", "card.json"
FILES = (checkpoint.AGENT, CARD_MD, CARD_JSON)  # what an export writes (and --force replaces)
EVAL_KEYS = ("return", "cost", "violation_rate", "episodes", "budget", "checkpoint", "step", "trained_env", "env")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="RUN_DIR_OR_PT", help="a run directory or one checkpoint file of a run")
    p.add_argument("dest", metavar="agents/NAME", help="the agent's folder (created)")
    p.add_argument("--eval-json", metavar="FILE", help="an evaluate.py --out JSON of these weights, for the card")
    p.add_argument("--force", action="store_true", help="replace the agent files in an existing folder")
    args = p.parse_args(argv)
    try:
        card = export(args.source, args.dest, args.eval_json, args.force)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    dest = Path(args.dest)
    print(f"agent: {dest / checkpoint.AGENT} ({card['size_bytes'] / 1e6:.2f} MB, {card['size_bytes']} bytes; "
          f"limit {MAX_BYTES / 1e6:g} MB)\ncard:  {dest / CARD_MD}, {dest / CARD_JSON}\n"
          f"use:   python evaluate.py --checkpoint {dest}\n"
          f"       python train.py --phase target --checkpoint {dest} --shift SHIFT --out runs/{dest.name}-SHIFT")
    return 0


def export(source: str | Path, dest: str | Path, eval_json: str | Path | None = None, force: bool = False) -> dict:
    """Write ``dest/agent.pt``, ``card.md`` and ``card.json`` from a run's checkpoint; returns the card."""
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise InputError(f"{str(dest)!r} is a file; give the agent's folder (e.g. agents/NAME)")
    if dest.exists() and not force:
        raise InputError(f"{str(dest)!r} already exists; give --force to replace its {', '.join(FILES)}, "
                         "or choose another name")
    state = checkpoint.load(source)  # InputError for a file that is not a checkpoint of this project
    evaluation = read_evaluation(eval_json, state) if eval_json is not None else None
    agent = {**checkpoint.agent_state(state), "exported_from": state.get("exported_from", state["path"])}
    created = not dest.exists()
    try:
        size = write_agent(dest / checkpoint.AGENT, agent)
    except BaseException:
        if created and dest.is_dir() and not any(dest.iterdir()):
            dest.rmdir()  # a refused export leaves nothing behind
        raise
    check_export(dest / checkpoint.AGENT, state)
    card = make_card(state, dest, size, evaluation)
    checkpoint.atomic_write(dest / CARD_JSON, lambda f: f.write((json.dumps(card, indent=1) + "\n").encode()))
    checkpoint.atomic_write(dest / CARD_MD, lambda f: f.write(card_markdown(card).encode()))
    return card


def write_agent(path: Path, state: dict) -> int:
    """Save ``state`` as a checkpoint at ``path`` (atomically: a temp file renamed over it) if it is at
    most ``MAX_BYTES``; returns its size. A larger one raises InputError and leaves ``path`` as it was."""
    state = {"format_version": checkpoint.FORMAT_VERSION, **state}  # as checkpoint.save writes it
    size = 0

    def write(f) -> None:
        nonlocal size
        torch.save(state, f)
        f.flush()
        size = f.tell()
        if size > MAX_BYTES:  # atomic_write deletes the temp file: nothing is written
            n = {part: sum(v.numel() for v in state[part].values()) for part in ("model", "agent")}
            raise InputError(f"the agent file would be {size / 1e6:.2f} MB ({size} bytes), over the "
                             f"{MAX_BYTES / 1e6:g} MB limit for an agent shipped in the repository "
                             f"(model {n['model']:,} and agent {n['agent']:,} float32 parameters); nothing "
                             "was written: export a smaller model (preset or image size)")

    checkpoint.atomic_write(path, write)
    return size


def check_export(path: Path, state: dict) -> None:
    """The written file loads pickle-free, holds no resume state, and its tensors are the run's, bit for bit."""
    saved = checkpoint.load(path)
    extra = [k for k in (*checkpoint.RESUME_ENTRIES, "env") if k in saved]
    if extra or not same_weights(saved, state):
        raise RuntimeError(f"the export {path} does not hold exactly the checkpoint's weights "
                           f"(resume entries {extra}); this is a bug of export_agent.py")


def same_weights(a: dict, b: dict) -> bool:
    """Bit for bit the same tensors (a NaN equals a NaN: the Lagrangian's last episode cost is NaN until a
    policy episode has ended)."""
    return all(a[part].keys() == b[part].keys() and all(
        a[part][k].dtype == b[part][k].dtype and torch.equal(a[part][k].nan_to_num(), b[part][k].nan_to_num())
        and torch.equal(a[part][k].isnan(), b[part][k].isnan()) for k in a[part])
        for part in ("model", "agent"))


def read_evaluation(path: str | Path, state: dict) -> dict:
    """The numbers of an ``evaluate.py --out`` JSON of one evaluation of the checkpoint's weights."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"--eval-json {str(path)!r} cannot be read as JSON: {e}") from None
    if not isinstance(data, dict) or not all(k in data for k in EVAL_KEYS):
        what = "a sweep or comparison" if isinstance(data, dict) and ({"sweep", "compare"} & data.keys()) \
            else "not one evaluation's evaluate.py --out file"
        raise InputError(f"--eval-json {str(path)!r} is {what}; give the --out JSON of one evaluation "
                         "(python evaluate.py --checkpoint RUN_OR_AGENT --out FILE)")
    step, env = state["counters"]["step"], state["config"]["env"]
    if data["step"] != step or data["trained_env"] != env:
        raise InputError(f"--eval-json {str(path)!r} evaluated a checkpoint at step {data['step']} trained on "
                         f"{data['trained_env']!r}, not this one (step {step}, trained on {env!r})")
    evaluated = Path(data["checkpoint"])
    if evaluated.is_file() and not same_weights(checkpoint.load(evaluated), state):
        raise InputError(f"--eval-json {str(path)!r} evaluated {str(evaluated)!r}, whose weights are not "
                         f"those of {state['path']!r}")
    keys = (*EVAL_KEYS, "seed", "deterministic", "attack", "epsilon", "attack_steps", "env_overrides")
    return {k: data[k] for k in keys if k in data}


# ------------------------------------------------------------------------------------------ card
def run_directory(path: Path) -> Path | None:
    """The run directory a checkpoint file belongs to, if it is still beside it."""
    folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return folder if (folder / "config.yaml").is_file() or (folder / "metrics.jsonl").is_file() else None


def training_evaluations(run_dir: Path | None, step: int) -> tuple[dict | None, dict | None]:
    """The run's last evaluation at or before ``step`` and, for a target run, its zero-shot evaluation."""
    if run_dir is None or not (run_dir / "metrics.jsonl").is_file():
        return None, None
    records = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["step"] <= step]
    evals = [r for r in records if "eval/return" in r]
    zero_shot = next((r for r in records if "target/zero_shot_return" in r), None)
    keep = lambda r: {k: v for k, v in r.items() if k == "step" or k.startswith(("eval/", "target/"))}  # noqa: E731
    return (keep(evals[-1]) if evals else None), (keep(zero_shot) if zero_shot else None)


def config_class(cfg: dict) -> type[config.Config]:
    if "adversary" in cfg:  # written by train.py, which resolves runs into RobustConfig
        from latent_adversary.config import RobustConfig

        return RobustConfig
    return config.Config


def training_command(state: dict, run_dir: Path | None) -> dict:
    """The train.py command that gives the checkpoint's config (a run does not keep its command line):
    a preset with --env/--seed/--steps/--device on top if one gives it exactly, else the run's
    config.yaml; each checked by resolving it as train.py does. ``preset`` is None when none fits."""
    cfg, phase = state["config"], state["phase"]
    cls = config_class(cfg)
    head = f"python train.py --phase {phase} --env {cfg['env']}"
    base = None
    if phase == "target":
        source = state.get("source_checkpoint") or ""
        try:
            source_cfg = checkpoint.load(source)["config"] if source else None
        except InputError:
            source_cfg = None
        if source_cfg is None:
            return {"preset": None, "command": None, "note": f"not recoverable: a target run's config starts from "
                    f"its source checkpoint's ({source or 'not recorded'}), which is not readable here"}
        base = {**source_cfg, **{section: {} for section in cls.SOURCE_ONLY_SECTIONS}}
        head += f" --checkpoint {source}"

    def gives(preset: str | None, files: list, sets: list) -> bool:
        try:
            return config.to_dict(config.resolve(preset, files, sets, base=copy.deepcopy(base), cls=cls)) == cfg
        except InputError:
            return False

    out = f" --out {run_dir}" if run_dir is not None else " --out RUN_DIR"
    sets = [f"env={cfg['env']}", f"seed={cfg['seed']}", f"train.steps={cfg['train']['steps']}",
            f"device={cfg['device']}"]
    flags = f" --seed {cfg['seed']} --steps {cfg['train']['steps']}" + \
        (f" --device {cfg['device']}" if cfg["device"] != "auto" else "")
    for preset in [*config.presets(), None]:
        if gives(preset, [], sets):
            return {"preset": preset, "command": head + (f" --preset {preset}" if preset else "") + flags + out,
                    "note": "rebuilt from the saved config (a run does not record its command line): the config "
                            + (f"is exactly the {preset} preset's" if preset else "is the defaults'")
                            + " with these flags on top (checked)"}
    saved = run_dir / "config.yaml" if run_dir is not None else None
    if saved is not None and saved.is_file() and gives(None, [saved], [f"env={cfg['env']}"]):
        return {"preset": None, "command": f"{head} --config {saved}{out}",
                "note": "the preset is not recorded and no preset with --env/--seed/--steps/--device on top gives "
                        "this config; the run's own config.yaml does (checked); key settings below"}
    return {"preset": None, "command": None,
            "note": "not recoverable: the preset is not recorded, no preset gives this config and the run's "
                    "config.yaml is not beside the checkpoint; the full config is in card.json"}


def key_settings(state: dict) -> dict:
    cfg, spec = state["config"], state["env_spec"]
    settings = {"image": "x".join(str(n) for n in spec["obs_shape"]), "action_dim": spec["action_dim"],
                "action_repeat": spec["action_repeat"], "episode_steps": spec["episode_steps"],
                "env_overrides": cfg["env_overrides"],
                **{f"model.{k}": cfg["model"][k] for k in ("feature_dim", "z1_dim", "z2_dim", "hidden_units",
                                                           "sequence_length")},
                **{f"agent.{k}": cfg["agent"][k] for k in ("hidden_units", "lagrangian", "budget", "latent_input")},
                **{f"train.{k}": cfg["train"][k] for k in ("steps", "initial_collection_steps", "eval_episodes")}}
    if cfg.get("randomize", {}).get("ranges"):
        settings["randomize.ranges"] = cfg["randomize"]["ranges"]
    adversary = cfg.get("adversary", {})
    if adversary.get("kind", "none") != "none":
        settings.update({f"adversary.{k}": adversary[k] for k in ("kind", "objective", "epsilon") if k in adversary})
    return settings


def make_card(state: dict, dest: Path, size: int, evaluation: dict | None) -> dict:
    source = Path(state["path"])
    run_dir = run_directory(source)
    final, zero_shot = training_evaluations(run_dir, state["counters"]["step"])
    cfg = state["config"]
    commit = state.get("code_version", "unknown")
    return {
        "name": dest.name, "folder": str(dest), "file": checkpoint.AGENT, "size_bytes": size,
        "sha256": hashlib.sha256((dest / checkpoint.AGENT).read_bytes()).hexdigest(),
        "phase": state["phase"], "env": cfg["env"], "seed": cfg["seed"], "env_spec": state["env_spec"],
        "counters": state["counters"], "commit": commit, "architecture": state.get("architecture"),
        "source": {"checkpoint": str(source), "run_dir": str(run_dir) if run_dir else None,
                   "exported_from": state.get("exported_from"),
                   "source_checkpoint": state.get("source_checkpoint") or None},
        "training": training_command(state, run_dir), "key_settings": key_settings(state),
        "final_training_evaluation": final, "zero_shot_evaluation": zero_shot, "evaluation": evaluation,
        "exported_with": checkpoint.code_version(), "config": cfg,
    }


def _stats(name: str, stats: dict) -> str:
    ci = stats.get("ci95")
    return f"{name} {stats['mean']:.4g} ± {stats['std']:.3g}" + (f" (95 % CI {ci[0]:.4g} to {ci[1]:.4g})" if ci else "")


def card_markdown(card: dict) -> str:
    c, spec, training = card["counters"], card["env_spec"], card["training"]
    commit = card["commit"]
    dirty = commit.endswith("+changes")
    lines = [
        f"# Agent `{card['name']}`", "",
        "A Safe SLAC latent model with a SAC-Lagrangian agent trained by this project's `train.py`, exported "
        "weights-only by `scripts/export_agent.py` (no optimiser, RNG or replay state: it can be evaluated and "
        "fine-tuned, not resumed). `card.json` holds all of this and the full config.", "",
        "| | |", "| --- | --- |",
        f"| file | `{card['file']}`, {card['size_bytes'] / 1e6:.2f} MB ({card['size_bytes']} bytes), "
        f"sha256 `{card['sha256'][:16]}…` |",
        f"| phase | {card['phase']} |",
        f"| env | `{card['env']}` (images {card['key_settings']['image']}, action size {spec['action_dim']}, "
        f"action repeat {spec['action_repeat']}, {spec['episode_steps']} agent steps per episode) |",
        f"| seed | {card['seed']} |",
        f"| steps | {c['step']} agent steps ({c['env_steps']} env steps), {c['episodes']} episodes, "
        f"{c['updates']} agent updates, {c['model_updates']} model updates |",
        f"| commit | `{commit}`" + (" (the working tree had uncommitted changes: the commit alone may not "
                                   "reproduce it)" if dirty else "") + " |",
        f"| network fingerprint | `{card['architecture']}` |",
        f"| preset | {training['preset'] or 'not recorded (see the key settings)'} |",
        f"| source | `{card['source']['checkpoint']}` |",
    ]
    if card["source"]["source_checkpoint"]:
        lines.append(f"| fine-tuned from | `{card['source']['source_checkpoint']}` |")
    lines += ["", "## Training command", ""]
    if training["command"]:
        lines += ["```bash", f"git checkout {commit.split('+')[0]}", training["command"], "```", ""]
    lines += [training["note"][0].upper() + training["note"][1:] + ".", "", "## Key settings", ""]
    lines += [f"- `{k}`: {v}" for k, v in card["key_settings"].items()]
    lines += ["", "## The run's last training evaluation", ""]
    final = card["final_training_evaluation"]
    if final:
        at = "the checkpoint's step" if final["step"] == c["step"] else f"before the checkpoint's step {c['step']}"
        lines.append(f"At step {final['step']} ({at}), {card['config']['train']['eval_episodes']} deterministic "
                     f"episodes of run seed {card['seed']}: return {final['eval/return']:.4g} ± "
                     f"{final.get('eval/return_std', float('nan')):.3g}, cost {final['eval/cost']:.4g} ± "
                     f"{final.get('eval/cost_std', float('nan')):.3g}, violation rate "
                     f"{final.get('eval/violation_rate', float('nan')):.0%} (budget {final.get('eval/budget', '?')}).")
    else:
        lines.append("None found (no metrics.jsonl beside the checkpoint, or no evaluation before its step).")
    zero_shot = card["zero_shot_evaluation"]
    if zero_shot:
        lines += ["", f"Zero-shot in the target env before fine-tuning: return "
                      f"{zero_shot['target/zero_shot_return']:.4g}, cost {zero_shot['target/zero_shot_cost']:.4g}."]
    lines += ["", "## Evaluation (`evaluate.py`)", ""]
    e = card["evaluation"]
    if e:
        attack = "" if e.get("attack", "none") == "none" else f", attack {e['attack']} ε={e['epsilon']:g}"
        lines += [f"`{e['env']}`, {e['episodes']} episodes, seed {e.get('seed')}"
                  f"{', deterministic' if e.get('deterministic', True) else ', stochastic'}{attack} "
                  f"(of `{e['checkpoint']}`):", "",
                  f"- {_stats('return', e['return'])}", f"- {_stats('cost', e['cost'])}",
                  f"- violation rate {e['violation_rate']:.0%} (episode cost over the budget {e['budget']:g})"]
    else:
        lines.append("None given (export with `--eval-json FILE`, the `--out` of "
                     "`python evaluate.py --checkpoint RUN_OR_AGENT --out FILE`).")
    name = card["folder"]
    lines += ["", "## Use", "", "```bash", f"python evaluate.py --checkpoint {name}",
              f"python train.py --phase target --checkpoint {name} --shift SHIFT --out runs/{card['name']}-SHIFT",
              "```", "", "Fine-tuning starts fresh Adam optimisers (the export holds none).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
