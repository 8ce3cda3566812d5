"""study.py / transfer/: bad inputs, the report's aggregates on a synthetic study, and a tiny study end to
end on a local Ray, killed in the middle and continued."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import study
from transfer import grid, report
from transfer.spec import StudyError, check_spec, load_spec

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "RAY_USAGE_STATS_ENABLED": "0"}

BASE = {"preset": "smoke", "source_env": "toy-reach", "targets": ["toy-hazard-colour"], "methods": {"none": {}},
        "seeds": [0], "source_steps": 100, "target_steps": 300, "scratch": {"enabled": True, "steps": 100},
        "eval_episodes": 1}


def write_spec(tmp_path: Path, name: str = "spec.yaml", **changes) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({**BASE, **changes}))
    return path


# ---------------------------------------------------------------- bad input: one error line, exit 2

@pytest.mark.parametrize("changes, message", [
    ({"targets": ["no-such-shift"]}, "unknown shift 'no-such-shift'"),
    ({"targets": ["tilted-colours"]}, "starts from 'dmc-cartpole-tilted', not the spec's source_env 'toy-reach'"),
    ({"methods": {"x": {"config": ["configs/no-such.yaml"]}}}, "unknown method config for method 'x'"),
    ({"seeds": []}, "seeds must be a non-empty list"),
    ({"methods": {"x": {"set": ["agent.nope=1"]}}}, "method 'x'"),
    ({"methods": {"b": {"set": ["train.keep_best_feasible=true"]}}, "eval_seed": 0},
     "eval_seed 0 is also a run seed, and method 'b' keeps best.pt"),
])
def test_bad_spec(tmp_path, capsys, changes, message):
    code = study.main(["run", str(write_spec(tmp_path, **changes)), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()  # nothing started


def test_unwritable_out_and_unreachable_ray(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert study.main(["run", str(write_spec(tmp_path)), "--out", str(blocker / "out")]) == 2
    assert "is not writable" in capsys.readouterr().err
    start = time.monotonic()
    code = study.main(["run", str(write_spec(tmp_path)), "--out", str(tmp_path / "o"), "--address", "127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and "Ray is unreachable at --address 127.0.0.1:9" in err and time.monotonic() - start < 10
    assert not list((tmp_path / "o" / "source").glob("*")) if (tmp_path / "o").exists() else True


def test_changed_spec_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "spec.yaml").write_text(yaml.safe_dump(check_spec({**BASE, "seeds": [0, 1]})))
    assert study.main(["run", str(write_spec(tmp_path)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "different spec" in err and "seeds: [0, 1] -> [0]" in err


def test_dry_run_lists_cells_and_estimate(tmp_path, capsys):
    spec = write_spec(tmp_path, seeds=[0, 1], methods={"none": {}, "latent": {"config": ["configs/adv-latent.yaml"]}},
                      attacks=[{"name": "latent-mc", "epsilons": [0, 0.5]}])
    assert study.main(["run", str(spec), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "18 cells:" in text  # 4 source, 4 zero-shot, 4 fine-tune, 4 attack, 2 scratch
    assert "finetune/latent/toy-hazard-colour/s1  after source/latent/s1" in text
    assert "--attack latent-mc --epsilon-sweep 0,0.5" in text
    assert "source       4 cells         400 agent steps" in text and "core-hours at 0.042 s" in text
    assert not (tmp_path / "out").exists()
    # of a study part-way, the estimate is of what is left to run
    (tmp_path / "out/source/none/s0").mkdir(parents=True)
    (tmp_path / "out/source/none/s0/done.json").write_text("{}")
    assert study.main(["run", str(spec), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "[done   ] source/none/s0" in text and "source       3 cells         300 agent steps" in text
    assert "without the 1 finished cell(s)" in text
    assert "--device" not in text  # each command's own default unless asked


def test_device_goes_to_every_command_of_the_study(tmp_path, capsys):
    spec = write_spec(tmp_path, seeds=[0], attacks=[{"name": "latent-mc", "epsilons": [0, 0.5]}])
    assert study.main(["run", str(spec), "--out", str(tmp_path / "out"), "--dry-run", "--device", "cuda"]) == 0
    commands = [ln.strip() for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("python")]
    assert len(commands) == 7  # source, zero-shot, fine-tune + its evaluation, attack, scratch + its evaluation
    assert all(c.count("--device cuda") == 1 for c in commands), commands
    cells = grid.build(load_spec(spec), tmp_path / "out", "python", device="cpu")
    assert {c.stages[0]["request"].get("device") for c in cells if c.stages[0]["kind"] == "train"} == {"cpu"}
    with pytest.raises(SystemExit):
        study.main(["run", str(spec), "--out", str(tmp_path / "out"), "--device", "gpu"])
    assert "invalid choice: 'gpu'" in capsys.readouterr().err


# ---------------------------------------------------------------- report on a synthetic study

def _metrics(path: Path, records: list[dict]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _eval(path: Path, ret: float, cost: float, vr: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"return": {"mean": ret}, "cost": {"mean": cost}, "violation_rate": vr}))


def test_report_aggregates_by_hand(tmp_path):
    spec = check_spec({**BASE, "seeds": [0, 1, 2], "target_steps": 200, "scratch": {"enabled": True, "steps": 300},
                       "baseline_return": {"toy-hazard-colour": 0.0}})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    t = "toy-hazard-colour"
    ft_ret, sc_cost = [1.0, 2.0, 6.0], [4.0, 5.0, 9.0]
    for i, s in enumerate([0, 1, 2]):
        _eval(tmp_path / "zero_shot/none" / t / f"s{s}/zero_shot.json", -1.0 - s, 3.0, 1.0)
        ft = tmp_path / "finetune/none" / t / f"s{s}"
        # fine-tune: eval at 0 (zero-shot) unsafe, at 100 safe but return below the baseline (s0), at 200 safe
        _metrics(ft, [{"step": 0, "eval/return": -1.0, "eval/cost": 5.0, "eval/budget": 1.25},
                      {"step": 50, "train/lifetime_cost": 2.0 + s},
                      {"step": 100, "train/lifetime_cost": 4.0 + s, "eval/return": float(s) - 0.5,
                       "eval/cost": 1.0, "eval/budget": 1.25},
                      {"step": 200, "train/lifetime_cost": 10.0 + s, "eval/return": 1.0, "eval/cost": 0.0,
                       "eval/budget": 1.25}])
        _eval(ft / "final_eval.json", ft_ret[i], 0.5 * s, 0.0)
        sc = tmp_path / "scratch" / t / f"s{s}"
        _metrics(sc, [{"step": 100, "train/lifetime_cost": 20.0},
                      {"step": 200, "train/lifetime_cost": 30.0 + 3 * s},
                      {"step": 300, "train/lifetime_cost": 90.0, "eval/return": 2.0, "eval/cost": 0.0,
                       "eval/budget": 1.25}])
        _eval(sc / "final_eval.json", 0.0, sc_cost[i], 1.0 if s == 2 else 0.0)
    md, js, plots = report.write(tmp_path)
    data = json.loads(js.read_text())["targets"][t]
    row = data["methods"]["none"]
    assert row["finetune_return"]["mean"] == pytest.approx(3.0)
    assert row["finetune_return"]["std"] == pytest.approx(np.std(ft_ret, ddof=1))
    lo, hi = row["finetune_return"]["ci95"]
    # bootstrap of the mean over seeds: within the values' range, around the mean
    assert 1.0 <= lo < 3.0 < hi <= 6.0
    means = np.random.default_rng(0).integers(0, 3, size=(report.BOOTSTRAP, 3))
    means = np.asarray(ft_ret)[means].mean(axis=1)
    assert [lo, hi] == pytest.approx([np.percentile(means, 2.5), np.percentile(means, 97.5)])
    assert row["zero_shot_return"]["mean"] == pytest.approx(-2.0)
    assert data["scratch"]["final_cost"]["mean"] == pytest.approx(6.0)
    assert data["scratch"]["final_violation_rate"]["mean"] == pytest.approx(1 / 3)
    # common target step: min(200, 300) = 200; fine-tune 10, 11, 12; scratch 30, 33, 36
    assert row["common_target_step"] == 200
    assert row["finetune_lifetime_cost"]["mean"] == pytest.approx(11.0)
    assert row["scratch_lifetime_cost"]["mean"] == pytest.approx(33.0)
    assert row["lifetime_cost_ratio"]["value"] == pytest.approx(1 / 3)
    # late training evaluations: those after 3/4 of the planned steps (150 of 200; 225 of 300)
    assert row["finetune_late_return"]["mean"] == pytest.approx(1.0) and row["finetune_late_cost"]["n"] == 3
    assert data["scratch"]["late_return"]["mean"] == pytest.approx(2.0)
    recs = report.read_metrics(tmp_path / "finetune/none" / t / "s0/metrics.jsonl")
    assert report.late_evaluations(recs, 400) is None  # unfinished: no late view
    assert report.late_evaluations(recs, 120)["evaluations"] == 2  # the evaluations at 100 and 200
    # its interval: each arm's seeds resampled, so within mean ranges 10-12 over 30-36
    r_lo, r_hi = row["lifetime_cost_ratio"]["ci95"]
    assert 10 / 36 <= r_lo < 1 / 3 < r_hi <= 12 / 30
    # first safe step with return > 0: s0 at 200 (return -0.5 at 100), s1, s2 at 100; scratch at 300
    assert row["first_safe_step"] == {"0": 200, "1": 100, "2": 100}
    assert data["scratch"]["first_safe_step"] == {"0": 300, "1": 300, "2": 300}
    text = md.read_text()
    assert "3 ± 2.65" in text and "| none | 200 | 11 ±" in text and f"| 0.333 [{r_lo:.3g}, {r_hi:.3g}] |" in text
    assert all(Path(p).stat().st_size > 1000 for p in plots) and len(plots) == 2
    # one seed: no interval and no spread, said as n=1
    assert report.aggregate([2.0])["ci95"] is None and report._cell(report.aggregate([2.0])) == "2 (n=1)"
    # a fourth fine-tune still running (at 50 of 200) is left out: it does not pull the common step back
    spec["seeds"] = [0, 1, 2, 3]
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    _metrics(tmp_path / "finetune/none" / t / "s3", [{"step": 50, "train/lifetime_cost": 1.0}])
    row = report.collect(tmp_path)["targets"][t]["methods"]["none"]
    assert row["common_target_step"] == 200 and row["finetune_lifetime_cost"]["values"] == [10.0, 11.0, 12.0]
    # while no fine-tune has finished, the started ones are compared at their common step (s3's 50)
    for s in (0, 1, 2):
        _metrics(tmp_path / "finetune/none" / t / f"s{s}", [{"step": 50, "train/lifetime_cost": 2.0 + s},
                                                             {"step": 100, "train/lifetime_cost": 4.0 + s}])
    row = report.collect(tmp_path)["targets"][t]["methods"]["none"]
    assert row["common_target_step"] == 50 and row["finetune_lifetime_cost"]["values"] == [2.0, 3.0, 4.0, 1.0]
    (tmp_path / "finetune/none" / t / "s3/metrics.jsonl").unlink()
    # fine-tunes not run yet: no common step (not the scratch runs' end), nothing compared
    for s in (0, 1, 2):
        (tmp_path / "finetune/none" / t / f"s{s}/metrics.jsonl").unlink()
    row = report.collect(tmp_path)["targets"][t]["methods"]["none"]
    assert row["common_target_step"] is None and "lifetime_cost_ratio" not in row


def test_first_safe_step_says_why_a_seed_has_none():
    arm = {"first_safe_step": {"0": 300, "1": None, "2": None, "3": None},
           "last_step": {"0": 300, "1": 600, "2": 250, "3": None}, "planned_steps": 600}
    assert report._steps(arm) == "s0: 300, s1: never, s2: not yet (at 250 of 600), s3: not run"
    # a failed cell (its failed.json) is not "not yet": it will not go on until the study runs it again
    arm["failed"] = {"0": False, "1": False, "2": True, "3": True}
    assert report._steps(arm) == "s0: 300, s1: never, s2: failed (at 250 of 600), s3: failed"


def test_report_goals_by_hand(tmp_path):
    """The goals table: ratios of seed means, their intervals with each arm's seeds resampled on their
    own, and the verdict counting the interval."""
    spec = check_spec({**BASE, "seeds": [0, 1, 2], "target_steps": 200, "scratch": {"enabled": True, "steps": 200},
                       "methods": {"none": {}, "latent": {"config": ["configs/adv-latent.yaml"]}}})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    t = "toy-hazard-colour"
    lifetime = {"none": [10.0, 20.0, 30.0], "latent": [4.0, 5.0, 9.0], "scratch": [100.0, 110.0, 120.0]}
    final_return = {"none": [80.0, 95.0, 110.0], "latent": [80.0, 60.0, 100.0], "scratch": [100.0, 100.0, 100.0]}
    for arm in lifetime:
        for s in range(3):
            d = tmp_path / ("scratch" if arm == "scratch" else f"finetune/{arm}") / t / f"s{s}"
            _metrics(d, [{"step": 200, "train/lifetime_cost": lifetime[arm][s]}])
            _eval(d / "final_eval.json", final_return[arm][s], 0.0, 0.0)
    _, js, _ = report.write(tmp_path)
    g = json.loads(js.read_text())["targets"][t]["goals"]

    def interval(num, den):
        rng = np.random.default_rng(0)
        a = np.asarray(num)[rng.integers(0, 3, size=(report.BOOTSTRAP, 3))].mean(axis=1)
        b = np.asarray(den)[rng.integers(0, 3, size=(report.BOOTSTRAP, 3))].mean(axis=1)
        return np.percentile(a / b, [2.5, 97.5])

    # none: saving 1 - 20/110; its interval from the ratio's, ends swapped
    assert g["none"]["saving_vs_scratch"]["value"] == pytest.approx(1 - 20 / 110)
    lo, hi = interval(lifetime["none"], lifetime["scratch"])
    assert g["none"]["saving_vs_scratch"]["ci95"] == pytest.approx([1 - hi, 1 - lo])
    assert g["none"]["return_vs_scratch"]["value"] == pytest.approx(0.95)
    assert g["none"]["saving_vs_none"] is None
    # latent: saving over none 1 - 6/20
    assert g["latent"]["saving_vs_none"]["value"] == pytest.approx(0.7)
    lo, hi = interval(lifetime["latent"], lifetime["none"])
    assert g["latent"]["saving_vs_none"]["ci95"] == pytest.approx([1 - hi, 1 - lo])
    assert g["latent"]["return_vs_scratch"]["value"] == pytest.approx(0.8)
    text = (tmp_path / "report.md").read_text()
    # none: saving 0.82, every resample above 0.7 (at most 30 / 100); return ratio 0.95, resamples down to 0.8
    assert report.judge(g["none"]["saving_vs_scratch"], 0.7) == "met (the whole interval)"
    assert report.judge(g["none"]["return_vs_scratch"], 0.9) == "met by the mean; the interval reaches below the goal"
    assert report.judge(g["latent"]["return_vs_scratch"], 0.9) == \
        "not met by the mean; the interval reaches the goal"  # resamples of (80, 60, 100) reach 100
    assert report.judge({"value": 0.1, "ci95": [0.05, 0.2], "n": [3, 3]}, 0.3) == "not met (the whole interval)"
    assert report.judge({"value": 0.5, "ci95": None, "n": [1, 3]}, 0.3) == "met (one seed: no interval)"
    assert report.judge({"value": 0.9, "ci95": None, "n": [2, 2]}, 0.3) == \
        "not shown (no interval: a resampled denominator mean is <= 0)"
    assert report.ratio_of_means(report.aggregate([1.0, 2.0]), report.aggregate([0.0, 60.0]))["ci95"] is None
    assert "| none | 200 | 0.82 [" in text and "| latent | 200 |" in text and "saving vs `none`" in text


def test_report_attack_sweeps_by_hand(tmp_path):
    """Per method and attack: each ε's return and cost averaged over the seeds' evaluate.py sweeps."""
    spec = check_spec({**BASE, "seeds": [0, 1], "scratch": {"enabled": False},
                       "attacks": [{"name": "latent-mc", "epsilons": [0, 0.5]}]})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    for s, (clean, attacked) in enumerate([((10.0, 1.0), (6.0, 3.0)), ((20.0, 3.0), (4.0, 9.0))]):
        sweep = [{"epsilon": e, "return": {"mean": r}, "cost": {"mean": c}}
                 for e, (r, c) in ((0.0, clean), (0.5, attacked))]
        path = tmp_path / "attack/none/latent-mc" / f"s{s}/sweep.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"sweep": sweep}))
    md, js, plots = report.write(tmp_path)
    rows = json.loads(js.read_text())["attacks"]["none"]["latent-mc"]
    assert [r["epsilon"] for r in rows] == [0, 0.5]
    assert rows[0]["return"]["mean"] == pytest.approx(15.0) and rows[0]["cost"]["mean"] == pytest.approx(2.0)
    assert rows[1]["return"]["mean"] == pytest.approx(5.0) and rows[1]["cost"]["mean"] == pytest.approx(6.0)
    assert "| none | latent-mc | 0.5 | 5 ±" in md.read_text()
    assert any(Path(p).name == "attack_latent-mc.png" and Path(p).stat().st_size > 1000 for p in plots)


def test_report_env_sweeps_by_hand(tmp_path):
    """A source-only screen (no targets): each value's return and cost averaged over the seeds' evaluate.py
    --env-sweep JSON, each seed's robust range computed from its results (not the figure its JSON holds)
    and the range of the mean cost, both around toy-reach's own hazard radius 0.18 (nearest swept: 0.2)."""
    spec = check_spec({**BASE, "targets": [], "seeds": [0, 1, 2], "scratch": {"enabled": False},
                       "methods": {"none": {}, "other": {}},  # other: not swept yet
                       "env_sweeps": [{"key": "hazard_radius", "values": [0.1, 0.2, 0.3]}]})  # s2 not run yet
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    costs = {0: (1.0, 4.0, 30.0), 1: (20.0, 8.0, 5.0)}  # budget 10: means 10.5, 6, 17.5 -> only 0.2 is in budget
    for s, cs in costs.items():
        results = [{"env_overrides": {"hazard_radius": v}, "budget": 10.0, "return": {"mean": 100.0 * (s + 1)},
                    "cost": {"mean": c}} for v, c in zip((0.1, 0.2, 0.3), cs, strict=True)]
        path = tmp_path / "env_sweep/none/hazard_radius" / f"s{s}/sweep.json"
        path.parent.mkdir(parents=True)
        stale = {"lower": 0.0, "upper": 9.0, "width": 9.0}  # not what the results say: the report recomputes
        path.write_text(json.dumps({"results": results, "robustness": stale}))
    md, js, plots = report.write(tmp_path)
    sweep = json.loads(js.read_text())["env_sweeps"]["none"]["hazard_radius"]
    assert [r["value"] for r in sweep["rows"]] == [0.1, 0.2, 0.3]
    assert [r["cost"]["mean"] for r in sweep["rows"]] == pytest.approx([10.5, 6.0, 17.5])
    assert [r["return"]["mean"] for r in sweep["rows"]] == pytest.approx([150.0] * 3)
    assert sweep["budget"] == 10.0 and sweep["robust_range_of_mean"] == {"lower": 0.2, "upper": 0.2, "width": 0.0}
    assert sweep["robust_range_per_seed"] == {"0": {"lower": 0.1, "upper": 0.2, "width": 0.1},
                                              "1": {"lower": 0.2, "upper": 0.3, "width": 0.1}}
    assert "2" not in sweep["robust_range_per_seed"]  # a seed without a sweep has no range, not "none"
    text = md.read_text()
    assert "| none | hazard_radius | 0.2 | 150 ±" in text
    assert ("| none | hazard_radius | 0.2 to 0.2 (width 0) | s0: 0.1 to 0.2 (width 0.1), s1: 0.2 to 0.3 (width 0.1) |"
            in text)
    assert "| other | hazard_radius | – | – |" in text  # no sweep yet: no range, not "none"
    assert any(Path(p).name == "env_sweep_hazard_radius.png" and Path(p).stat().st_size > 1000 for p in plots)


def test_report_sweep_summary_by_hand(tmp_path):
    """The at-a-glance table: clean return and cost at the source env's own value (toy-reach's hazard
    radius is 0.18), the return against none's, and each robust range's width beside none's."""
    values = (0.1, 0.18, 0.3)
    spec = check_spec({**BASE, "targets": [], "seeds": [0], "scratch": {"enabled": False},
                       "methods": {"none": {}, "wide": {"set": ["agent.lr=0.001"]}},
                       "env_sweeps": [{"key": "hazard_radius", "values": list(values)}]})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    runs = {"none": ((200.0, 180.0, 150.0), (2.0, 8.0, 30.0)),   # budget 10: 0.1 to 0.18 within, width 0.08
            "wide": ((150.0, 144.0, 120.0), (1.0, 3.0, 9.0))}    # all within: width 0.2
    for method, (returns, costs) in runs.items():
        results = [{"env_overrides": {"hazard_radius": v}, "budget": 10.0, "return": {"mean": r}, "cost": {"mean": c}}
                   for v, r, c in zip(values, returns, costs, strict=True)]
        path = tmp_path / "env_sweep" / method / "hazard_radius/s0/sweep.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"results": results, "robustness": None}))
    md, js, _ = report.write(tmp_path)
    summary = json.loads(js.read_text())["env_sweep_summary"]
    assert summary["nominal"] == {"hazard_radius": 0.18}
    assert summary["methods"]["none"] == {"clean_return": 180.0, "clean_cost": 8.0,
                                          "widths": {"hazard_radius": pytest.approx(0.08)}}
    assert summary["methods"]["wide"]["widths"]["hazard_radius"] == pytest.approx(0.2)
    text = md.read_text()
    assert "| none | 180 | 8 | 1 | 0.08 |" in text
    assert "| wide | 144 | 3 | 0.8 | 0.2 (0.08) |" in text


def test_finetune_set_reaches_only_the_fine_tune_cells(tmp_path, capsys):
    with pytest.raises(StudyError, match="finetune_set with method 'none'"):
        check_spec({**BASE, "finetune_set": ["train.nope=1"]})
    spec = write_spec(tmp_path, finetune_set=["train.initial_learning_steps=0"])
    assert study.main(["run", str(spec), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "train.py" in line]
    assert [("initial_learning_steps=0" in line, "--phase target" in line) for line in lines] == \
        [(False, False), (True, True), (False, False)]  # source, fine-tune, scratch


def test_a_fine_tuning_variant_fine_tunes_its_source_methods_runs(tmp_path, capsys):
    """A method with ``source: none`` has fine-tune cells only, started from none's source runs with the
    study's finetune_set and then its own; the report takes none's zero-shot for it."""
    for methods, message in (
            ({"none": {}, "v": {"source": "nope"}}, "source 'nope' is not a method that trains its own"),
            ({"none": {}, "v": {"source": "none", "set": ["agent.tau=0.01"]}}, "takes no config or set"),
            ({"none": {}, "v": {"source": "none"}, "w": {"source": "v"}}, "source 'v' is not a method that trains"),
            ({"none": {}, "v": {"source": "none", "finetune_set": ["train.nope=1"]}}, "finetune_set with method 'v'"),
            ({"none": {}, "v": {"source": "none", "lr": 1}}, "must be a mapping with config")):
        with pytest.raises(StudyError, match=message):
            check_spec({**BASE, "methods": methods})
    with pytest.raises(StudyError, match="fine-tuning variant, and targets is empty"):
        check_spec({**BASE, "targets": [], "methods": {"none": {}, "v": {"source": "none"}},
                    "attacks": [{"name": "latent-mc", "epsilons": [0]}]})
    assert check_spec(dict(BASE))["methods"] == {"none": {"config": [], "set": []}}  # stored specs still match

    spec = check_spec({**BASE, "seeds": [0, 1], "finetune_set": ["train.eval_interval=50"],
                       "attacks": [{"name": "latent-mc", "epsilons": [0]}],
                       "methods": {"none": {}, "v": {"source": "none", "finetune_set": ["agent.lagrange_lr=0.001"]}}})
    cells = {c.id: c for c in grid.build(spec, tmp_path / "study", "python")}
    assert sorted(i for i in cells if "/v/" in i) == [f"finetune/v/toy-hazard-colour/s{s}" for s in (0, 1)]
    v, plain = cells["finetune/v/toy-hazard-colour/s1"], cells["finetune/none/toy-hazard-colour/s1"]
    assert v.deps == plain.deps == ["source/none/s1"]
    argv = v.stages[0]["new"]
    assert argv[argv.index("--checkpoint") + 1] == str(tmp_path / "study/source/none/s1")
    assert argv[argv.index("--set") + 1:argv.index("--out")] == ["train.eval_interval=50", "agent.lagrange_lr=0.001"]
    assert plain.stages[0]["new"][plain.stages[0]["new"].index("--set") + 1] == "train.eval_interval=50"

    # the report, without a scratch arm: v's zero-shot is none's, its fine-tunes its own, its lifetime
    # cost against none's at their common step; attacks only for none
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    (study_dir / "spec.yaml").write_text(yaml.safe_dump({**spec, "scratch": {"enabled": False, "steps": 300}}))
    t = "toy-hazard-colour"
    for seed in (0, 1):
        _eval(study_dir / "zero_shot/none" / t / f"s{seed}/zero_shot.json", 5.0 + seed, 2.0, 0.5)
        _eval(study_dir / "finetune/v" / t / f"s{seed}/final_eval.json", 7.0, 1.0, 0.0)
        for m, lifetime in (("none", [10.0, 14.0]), ("v", [3.0, 6.0])):
            _metrics(study_dir / f"finetune/{m}" / t / f"s{seed}",
                     [{"step": 300, "train/lifetime_cost": lifetime[seed]}])
    data = report.collect(study_dir)
    row = data["targets"][t]["methods"]["v"]
    assert row["zero_shot_return"]["mean"] == pytest.approx(5.5) and row["source_method"] == "none"
    assert row["finetune_return"]["mean"] == pytest.approx(7.0)
    assert row["common_target_step"] == 300 and row["finetune_lifetime_cost"]["mean"] == pytest.approx(4.5)
    g = data["targets"][t]["goals"]["v"]
    assert g["saving_vs_none"]["value"] == pytest.approx(1 - 4.5 / 12.0)
    # paired by seed (the same source runs): a resample takes seed 0 or 1 or both for both methods, so the
    # ratio is 3/10, 4.5/12 or 6/14; each method's seeds resampled apart would reach 3/14 to 6/10
    assert g["saving_vs_none"]["ci95"] == pytest.approx([1 - 6 / 14, 1 - 3 / 10])
    assert g["saving_vs_scratch"] is None and g["return_vs_scratch"] is None
    assert list(data["attacks"]) == ["none"]
    text = report.markdown(data, [])
    assert "| none: zero-shot |" in text and "| v: zero-shot |" not in text and "| v: fine-tuned (final) | 7" in text
    assert "`v`: `none`'s sources, `agent.lagrange_lr=0.001`" in text
    assert "| v | 300 | 4.5 ±" in text and "| 0.62 [0.57, 0.70]" in text  # the lifetime and goals tables
    assert "shared source runs jointly" in text


def test_scratch_set_reaches_only_the_scratch_cells(tmp_path, capsys):
    with pytest.raises(StudyError, match="scratch.set"):
        check_spec({**BASE, "scratch": {"enabled": True, "set": ["train.nope=1"]}})
    assert "set" not in check_spec(dict(BASE))["scratch"]  # the specs stored before it still match
    spec = write_spec(tmp_path, scratch={"enabled": True, "steps": 100, "set": ["train.eval_interval=50"]})
    assert study.main(["run", str(spec), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "train.py" in line]
    assert [("train.eval_interval=50" in line, "toy-reach-grey" in line) for line in lines] == \
        [(False, False), (False, False), (True, True)]  # source, fine-tune, scratch


def test_env_sweeps_in_a_spec_are_checked_and_become_cells(tmp_path, capsys):
    for sweeps, message in (([{"key": "nope", "values": [1, 2]}], "env sweep of 'nope'"),
                            ([{"key": "hazard_radius", "values": [0.1]}], "at least two values"),
                            ([{"key": "hazard_radius", "values": [0.1, 0.2, 0.1]}], "hazard_radius=0.1 more than once"),
                            ([{"key": "hazard_radius"}], "env_sweeps must be a list")):
        with pytest.raises(StudyError, match=message):
            check_spec({**BASE, "env_sweeps": sweeps})
    with pytest.raises(StudyError, match="targets is empty and there are no attacks or env_sweeps"):
        check_spec({**BASE, "targets": []})
    spec = write_spec(tmp_path, targets=[], scratch=False, env_sweeps=[{"key": "hazard_radius", "values": [0.1, 0.2]}])
    assert study.main(["run", str(spec), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "2 cells:" in text and "env_sweep/none/hazard_radius/s0  after source/none/s0" in text
    assert "--env-sweep hazard_radius=0.1,0.2" in text


# ---------------------------------------------------------------- end to end on local Ray, killed and continued

def _snapshot(paths: list[Path]) -> dict:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in paths}


def test_eta_counts_steps_left_the_longest_chain_and_the_slots(tmp_path):
    from transfer.grid import Cell
    from transfer.runner import eta_seconds

    src = Cell("source/a/s0", "source", tmp_path / "src", [], steps=100)
    ft = Cell("finetune/a/t/s0", "finetune", tmp_path / "ft", [], deps=["source/a/s0"], steps=50)
    other = Cell("source/b/s0", "source", tmp_path / "other", [], steps=100)
    attack = Cell("attack/a/x/s0", "attack", tmp_path / "attack", [], deps=["source/a/s0"], episodes=20)
    assert eta_seconds([src], None, 0.0, 2, {}) is None  # no step time: unknown
    # 1 s per step, 2 s per episode; one slot: all the work in a row (100 + 50 + 100 + 40);
    # 8 slots: the chain source -> fine-tune (100 + 50)
    assert eta_seconds([src, ft, other, attack], 1.0, 2.0, 1, {}) == pytest.approx(290.0)
    assert eta_seconds([src, ft, other, attack], 1.0, 2.0, 8, {}) == pytest.approx(150.0)
    # a run part-way (its metrics at step 30) counts the steps it has left; an evaluation, the time it ran
    src.dir.mkdir()
    (src.dir / "metrics.jsonl").write_text(json.dumps({"step": 30}) + "\n")
    assert eta_seconds([src, ft], 1.0, 2.0, 8, {"source/a/s0": 500.0}) == pytest.approx(120.0)
    # not running, it continues from its checkpoint (none here: all 100 steps; at 20: 80 left)
    assert eta_seconds([src, ft], 1.0, 2.0, 8, {}) == pytest.approx(150.0)
    (src.dir / "checkpoints").mkdir()
    for name in ("latest.pt", "replay_10.npz", "replay_20.npz"):
        (src.dir / "checkpoints" / name).write_bytes(b"")
    assert eta_seconds([src, ft], 1.0, 2.0, 8, {}) == pytest.approx(130.0)
    assert eta_seconds([attack], 1.0, 2.0, 1, {attack.id: 15.0}) == pytest.approx(25.0)


def test_submission_order_dependents_first_then_the_baselines():
    from transfer.grid import Cell
    from transfer.runner import submission_order

    src_a, src_b = Cell("source/a/s0", "source", Path("x"), []), Cell("source/b/s0", "source", Path("x"), [])
    scratch = Cell("scratch/t/s0", "scratch", Path("x"), [])
    sweep = Cell("env_sweep/a/m/s0", "env_sweep", Path("x"), [], deps=["source/a/s0"])
    ft = Cell("finetune/a/t/s0", "finetune", Path("x"), [], deps=["source/a/s0"])
    src_a1 = Cell("source/a/s1", "source", Path("x"), [], method="a")
    src_a.method, src_b.method = "a", "b"
    order = submission_order([src_a, src_b, scratch, sweep, ft, src_a1], baseline_method="a")
    # dependents first; then the baseline's sources, scratch, the other methods' sources
    assert [c.id for c in order] == [sweep.id, ft.id, src_a.id, src_a1.id, scratch.id, src_b.id]
    order = submission_order([src_b, scratch, src_a], baseline_method="b")
    assert [c.id for c in order] == [src_b.id, scratch.id, src_a.id]


def _done_cells(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.rglob("done.json"))


def _wait_for_cells_to_stop(study: Path, timeout: float = 120.0) -> None:
    """Until no cell holds its lock in DIR/.running (each running cell holds one while it runs)."""
    from transfer.cell import wait_unlocked

    for lock in (study / ".running").glob("*.lock"):
        assert wait_unlocked(lock, timeout, poll=0.1), f"{lock.name} is still held after the runner was killed"


def test_stop_ends_the_runner_and_its_training_cells_save(tmp_path):
    """`study.py stop DIR` SIGTERMs the study process; its running train.py saves a checkpoint (no periodic
    one here), the runner lets go of DIR, and a second runner on DIR is refused while the first runs."""
    spec = write_spec(tmp_path, source_steps=5000, scratch={"enabled": False},
                      set=["train.checkpoint_interval=100000"])
    out = tmp_path / "study"
    cmd = [sys.executable, str(REPO / "study.py"), "run", str(spec), "--out", str(out), "--max-parallel", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    src = out / "source/none/s0"
    try:
        deadline = time.monotonic() + 300
        while not report.read_metrics(src / "metrics.jsonl"):
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the source run did not start"
            time.sleep(0.1)
        second = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "another study process" in second.stderr, second.stderr
        status = subprocess.run([sys.executable, str(REPO / "study.py"), "status", str(out)], cwd=REPO, env=ENV,
                                capture_output=True, text=True, timeout=120)
        assert f"run by the study process {socket.gethostname()} {proc.pid}" in status.stdout, status.stdout
        assert f"study.py stop {out}" in second.stderr
        assert not (src / "checkpoints").exists()
        stopped = subprocess.run([sys.executable, str(REPO / "study.py"), "stop", str(out)], cwd=REPO, env=ENV,
                                 capture_output=True, text=True, timeout=900)
        assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stdout + stopped.stderr
        assert proc.wait(timeout=60) == 130
        from transfer.cell import checkpoint_step, wait_unlocked
        assert wait_unlocked(src / ".lock") and not (src / "done.json").exists()
        assert 0 < checkpoint_step(src) < 5000  # saved when stopped, mid-run
        again = subprocess.run([sys.executable, str(REPO / "study.py"), "stop", str(out)], cwd=REPO, env=ENV,
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "no study process is running" in again.stdout
        status = subprocess.run([sys.executable, str(REPO / "study.py"), "status", str(out)], cwd=REPO, env=ENV,
                                capture_output=True, text=True, timeout=120)
        assert "no study process is running it" in status.stdout, status.stdout
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_study_end_to_end_killed_and_continued(tmp_path):
    """The smoke study's shape (2 methods x 2 seeds x 1 target, scratch on), shorter runs, and an env sweep
    of the source checkpoints: 18 cells."""
    spec = write_spec(tmp_path, methods={"none": {}, "latent": {"config": ["configs/adv-latent.yaml"]}},
                      seeds=[0, 1], env_sweeps=[{"key": "hazard_radius", "values": [0.1, 0.3]}])
    out = tmp_path / "study"
    cmd = [sys.executable, str(REPO / "study.py"), "run", str(spec), "--out", str(out), "--max-parallel", "2"]
    t = "toy-hazard-colour"
    finetunes = [out / f"finetune/{m}/{t}/s{s}" for m in ("none", "latent") for s in (0, 1)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 600  # generous: a loaded machine is slow; a quiet one takes ~1 min
        # kill once a fine-tune run has a checkpoint and is not finished
        while not (cut := [f for f in finetunes if (f / "checkpoints/latest.pt").exists()
                           and not (f / "done.json").exists()]):
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the study did not get to a fine-tune cell"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and what it started in its session
        proc.wait()
        _wait_for_cells_to_stop(out)  # a Ray worker outside the session may still end a cell: count it done
        cut = [f for f in cut if not (f / "done.json").exists()]
        assert cut, "every cut fine-tune finished before the kill took effect"
        ft = cut[0]
        first_line = (ft / "metrics.jsonl").read_text().splitlines()[0]
        finished = _done_cells(out)
        assert out / "source/none/s0" in finished or out / "source/latent/s0" in finished
        before = _snapshot([p for d in finished for p in d.rglob("*") if p.is_file()])
        status = subprocess.run([sys.executable, str(REPO / "study.py"), "status", str(out)], cwd=REPO, env=ENV,
                                capture_output=True, text=True)
        assert status.returncode == 0 and "source" in status.stdout, status.stderr

        again = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"18 cells, {len(finished)} done, {18 - len(finished)} to run" in again.stdout, again.stdout
        # the ETA starts from the step time of the training cells finished before the kill, not the preset's
        trained = [d for d in finished if d.relative_to(out).parts[0] in ("source", "finetune", "scratch")]
        assert f"s per agent step (measured over {len(trained)} finished training cell(s) of this study" \
            in again.stdout, again.stdout
        assert _snapshot(list(before)) == before  # finished cells were not run again
        done = json.loads((ft / "done.json").read_text())
        assert done["resumed_from_step"] >= 100 and "--resume" in done["commands"][0]["argv"]
        assert (ft / "metrics.jsonl").read_text().splitlines()[0] == first_line  # continued, not restarted
        assert len(_done_cells(out)) == 18
        for f in finetunes:
            assert report.read_metrics(f / "metrics.jsonl")[-1]["step"] == 300 and (f / "final_eval.json").exists()
        for s in (0, 1):
            assert (out / f"scratch/{t}/s{s}/final_eval.json").exists()

        status = subprocess.run([sys.executable, str(REPO / "study.py"), "status", str(out)], cwd=REPO, env=ENV,
                                capture_output=True, text=True)
        assert "total         18        0        0       0" in status.stdout, status.stdout
        rep = subprocess.run([sys.executable, str(REPO / "study.py"), "report", str(out)], cwd=REPO, env=ENV,
                             capture_output=True, text=True)
        assert rep.returncode == 0, rep.stderr
        text = (out / "report.md").read_text()
        assert "none: fine-tuned (final)" in text and "latent: fine-tuned (final)" in text
        assert "scratch (final)" in text
        data = json.loads((out / "report.json").read_text())
        for m in ("none", "latent"):
            assert data["targets"][t]["methods"][m]["common_target_step"] == 100
            assert data["targets"][t]["methods"][m]["zero_shot_return"]["n"] == 2  # both seeds aggregated
            assert data["targets"][t]["methods"][m]["finetune_lifetime_cost"]["n"] == 2
            assert [r["cost"]["n"] for r in data["env_sweeps"][m]["hazard_radius"]["rows"]] == [2, 2]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything of the killed study still alive (its own group)
        except ProcessLookupError:
            pass


def test_the_committed_smoke_study_spec_still_matches():
    """A study made before env_sweeps and finetune_set existed normalises to the spec it stored, so
    `study.py run` on it is not refused as changed."""
    stored = yaml.safe_load((REPO / "docs/results/study-smoke/spec.yaml").read_text())
    again = check_spec(yaml.safe_load((REPO / "configs/studies/smoke.yaml").read_text()), base=REPO)
    names = lambda spec: {**spec, "methods": {m: {**v, "config": [Path(f).name for f in v["config"]]}  # noqa: E731
                                              for m, v in spec["methods"].items()}}  # written on another checkout
    assert names(again) == names(stored)


@pytest.mark.parametrize("path", sorted((REPO / "configs/studies").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_study_spec_passes_its_checks(path):
    """A spec in configs/studies is what a user runs: it must resolve (every method's config overlays and
    sets, the fine-tuning variants' sources) as `study.py run` resolves it before any cell starts."""
    spec = check_spec(yaml.safe_load(path.read_text()), base=REPO)
    assert spec["methods"] and spec["seeds"]


def test_status_shows_the_step_of_running_training_cells(tmp_path):
    """A cell whose lock is held is running; status prints the last step its metrics reached."""
    import fcntl

    from transfer import cell as cellmod
    from transfer.runner import status

    spec = check_spec({**BASE, "scratch": False})
    out = tmp_path / "study"
    out.mkdir()
    (out / "spec.yaml").write_text(yaml.safe_dump(spec))
    run_dir = out / "source/none/s0"
    _metrics(run_dir, [{"step": 50, "loss/kl": 1.0}, {"step": 75, "eval/return": 2.0}])
    (run_dir / "metrics.jsonl").open("a").write('{"step": 8')  # a record being written
    lock = out / ".running" / f"{cellmod.safe_id('source/none/s0')}.lock"
    lock.parent.mkdir()
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        text = status(out)
    assert "source/none/s0: step 75 of 100" in text and "  source         0        1        0       0" in text
    assert "remaining: 325 agent steps of training" in text  # the source's last 25 and the fine-tune's 300
    # not running, its metrics count for nothing without a checkpoint (a study copied back from its export)
    text = status(out)
    assert "  source         0        0        1       0" in text and "remaining: 400 agent steps" in text
    # the time left at the step time of the training cells the study finished itself: a fine-tune copied
    # from another study counts for nothing; the source's train.py took 20 s for the 50 steps after its
    # resume (its evaluation's 99 s not counted): 0.4 s per step
    def done(cell: str, commands: list[tuple[str, float]], **extra) -> None:
        (out / cell).mkdir(parents=True, exist_ok=True)
        (out / cell / "done.json").write_text(json.dumps(
            {"commands": [{"argv": ["python", f"/repo/{c}"], "wall_s": w} for c, w in commands], **extra}))

    done("finetune/none/toy-hazard-colour/s0", [("train.py", 1.0)], resumed_from_step=None, reused_from="/x")
    assert "measured" not in status(out)
    done("source/none/s0", [("train.py", 20.0), ("evaluate.py", 99.0)], resumed_from_step=50)
    assert "at 0.4 s per agent step (measured over 1 finished training cell(s) of this study)" in status(out)


# ---------------------------------------------------------------- a study grows; it reuses another's source runs

def test_a_spec_may_add_methods_and_seeds_only(tmp_path):
    from transfer import runner

    out = tmp_path / "out"
    out.mkdir()
    old = check_spec(dict(BASE))
    (out / "spec.yaml").write_text(yaml.safe_dump(old))
    latent = {"config": ["configs/adv-latent.yaml"]}
    grown = check_spec({**BASE, "seeds": [0, 1], "methods": {"none": {}, "latent": latent}})
    assert runner.check_spec_unchanged(out, old) == (True, [])
    assert runner.check_spec_unchanged(out, grown) == (True, ["method latent", "seed 1"])
    for changed in ({"methods": {"none": {"set": ["agent.lr=1e-3"]}}},  # an existing method changes
                    {"seeds": [1]},                                      # a seed goes
                    {"seeds": [0, 1], "source_steps": 200}):             # a cell's meaning changes
        with pytest.raises(StudyError, match="A study may only add methods or seeds"):
            runner.check_spec_unchanged(out, check_spec({**BASE, **changed}))


def _fake_source_run(run_dir: Path, cfg_dict: dict) -> None:
    """A finished source cell as a study leaves it, without training: config.yaml, metrics, a checkpoint file."""
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg_dict, sort_keys=False))
    _metrics(run_dir, [{"step": 100, "eval/return": 1.0, "eval/cost": 0.0}])
    (run_dir / "checkpoints" / "latest.pt").write_bytes(b"weights")
    (run_dir / ".lock").write_text("")
    (run_dir / "done.json").write_text(json.dumps({"id": "source/none/s0", "arm": "source", "exit_code": 0}))


def test_reuse_copies_only_runs_whose_resolved_config_is_the_same(tmp_path, capsys, monkeypatch):
    from latent_adversary.config import RobustConfig
    from slac import checkpoint, config
    from slac.errors import InputError
    from slac.run import RunRequest, new_run_config
    from transfer import runner

    def load(run_dir, map_location="cpu", latest=False):
        """These fake runs' checkpoint: the config in their config.yaml (a real one: the next test)."""
        path = checkpoint.resolve_path(run_dir, latest)
        if path.read_bytes() != b"weights":
            raise InputError(f"checkpoint {path} is corrupt")
        return {"config": yaml.safe_load((Path(run_dir) / "config.yaml").read_text()), "code_version": "abc1234"}

    monkeypatch.setattr(checkpoint, "load", load)

    spec = check_spec({**BASE, "seeds": [0, 1, 2]})
    other, out = tmp_path / "screen", tmp_path / "study"
    other.mkdir(), out.mkdir()
    (other / "spec.yaml").write_text(yaml.safe_dump(spec))
    cells = {c.id: c for c in grid.build(spec, out, sys.executable)}

    def resolved(seed: int) -> dict:
        request = RunRequest(**cells[f"source/none/s{seed}"].stages[0]["request"])
        return config.to_dict(new_run_config(request, RobustConfig)[0])

    assert resolved(0)["seed"] == 0 and resolved(0)["train"]["steps"] == 100 and resolved(0)["env"] == "toy-reach"
    _fake_source_run(other / "source/none/s0", resolved(0))
    different = resolved(1)
    different["agent"]["lr"] = 0.5  # e.g. a run of another preset or an older default
    _fake_source_run(other / "source/none/s1", different)
    (other / "source/none/s2").mkdir(parents=True)  # started there, not finished
    lines = []
    # --dry-run says what it would copy and copies nothing; its estimate leaves that run out
    would = runner.reuse_runs(list(cells.values()), out, [other], echo=lines.append, dry_run=True)
    assert would == ["source/none/s0"]
    assert not (out / "source").exists() and any("source/none/s0: would be copied from" in ln for ln in lines)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    assert study.main(["run", str(spec_file), "--out", str(tmp_path / "new"), "--dry-run", "--reuse-source",
                       str(other)]) == 0
    printed = capsys.readouterr().out
    assert "source       2 cells         200 agent steps" in printed and "without the 1 cell(s) --reuse" in printed
    lines.clear()
    assert runner.reuse_runs(list(cells.values()), out, [other], echo=lines.append) == ["source/none/s0"]
    copied = out / "source/none/s0"
    assert (copied / "checkpoints/latest.pt").read_bytes() == b"weights"
    assert (copied / "metrics.jsonl").read_text() == (other / "source/none/s0/metrics.jsonl").read_text()
    assert not (copied / ".lock").exists()
    done = json.loads((copied / "done.json").read_text())
    assert done["reused_from"] == str(other / "source/none/s0") and done["id"] == "source/none/s0"
    assert done["code_version"] == "abc1234" and done["code_changed_since"] is None  # no such commit here
    assert runner.cell_state(cells["source/none/s0"], out) == "done"
    assert not (out / "source/none/s1").exists() and not (out / "source/none/s2").exists()
    assert any("source/none/s1: not reused, its config differs: agent.lr: 0.5 -> " in ln for ln in lines), lines
    assert any("source/none/s2: unfinished in " in ln and ln.endswith("it trains here") for ln in lines), lines
    assert lines[-1] == f"reuse: 1 run(s) copied (1 from {other}); 8 train here"  # and 3 scratch runs, 3 fine-tunes
    # a cell already started here is never replaced, even by a matching run; a done one is not copied again
    (other / "source/none/s1/config.yaml").write_text(yaml.safe_dump(resolved(1), sort_keys=False))
    (out / "source/none/s1").mkdir(parents=True)
    (out / "source/none/s1" / "metrics.jsonl").write_text("")
    assert runner.reuse_runs(list(cells.values()), out, [other], echo=lines.append) == []
    assert (out / "source/none/s1" / "metrics.jsonl").read_text() == ""
    (out / "source/none/s1" / "metrics.jsonl").unlink()
    assert runner.reuse_runs(list(cells.values()), out, [other], echo=lines.append) == ["source/none/s1"]
    # a finished cell whose checkpoints are gone (an exported study's copy) is not reused
    (other / "source/none/s2" / "done.json").write_text("{}")
    (other / "source/none/s2" / "config.yaml").write_text(yaml.safe_dump(resolved(2), sort_keys=False))
    assert runner.reuse_runs(list(cells.values()), out, [other], echo=lines.append) == []
    assert any("source/none/s2: not reused, no usable checkpoint" in ln for ln in lines), lines
    with pytest.raises(StudyError, match="holds no study"):
        runner.reuse_runs(list(cells.values()), out, [tmp_path / "nothing"])


def test_export_copies_the_small_files_and_the_report_is_the_same(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "runs" / "s"
    spec = check_spec({**BASE, "seeds": [0, 1]})
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    t = "toy-hazard-colour"
    for s in (0, 1):
        src = folder / f"source/none/s{s}"
        _fake_source_run(src, {"seed": s})
        (src / "tensorboard").mkdir()
        (src / "tensorboard" / "events.out.tfevents.1").write_bytes(b"x")
        (src / "checkpoints" / "replay_000000100.npz").write_bytes(b"x")
        ft = folder / f"finetune/none/{t}/s{s}"
        _metrics(ft, [{"step": 100, "train/lifetime_cost": 3.0 + s}])
        _eval(ft / "final_eval.json", 1.0 + s, 0.0, 0.0)
    (folder / "logs").mkdir()
    (folder / "logs" / "source__none__s0.0-train.out").write_text("output")
    (folder / ".running").mkdir()
    (folder / ".running" / "source__none__s0.lock").write_text("")
    md, _, _ = report.write(folder)
    dest = tmp_path / "docs" / "s"
    assert study.main(["export", str(folder), str(dest)]) == 0
    assert "copied" in capsys.readouterr().out
    kept = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert kept == sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()
                          and p.suffix in (".yaml", ".json", ".jsonl", ".md", ".png")
                          and not {"checkpoints", "tensorboard", "logs", ".running"} & set(p.relative_to(folder).parts))
    assert "source/none/s0/metrics.jsonl" in kept and "report.md" in kept and f"{t}_cost.png" in kept
    assert not any("checkpoints" in k or "tensorboard" in k or "logs" in k or ".lock" in k for k in kept)
    before = md.read_text()
    monkeypatch.chdir(dest)
    report.write(Path("."))  # as `study.py report .` in the copy
    assert (dest / "report.md").read_text() == before  # the same report from the copy alone
    assert before.startswith("# Transfer study report: s\n")  # named after its folder, even as "."
    assert study.main(["export", str(folder), str(folder / "inside")]) == 2
    assert "inside the study" in capsys.readouterr().err


def test_export_deletes_a_marker_the_study_no_longer_holds(tmp_path):
    # a cell that had failed when it was exported and finished since: its failed.json goes from the export
    folder, dest = tmp_path / "study", tmp_path / "export"
    cell = Path("source/none/s0")
    _fake_source_run(folder / cell, {"seed": 0})
    (folder / cell / "done.json").unlink()
    (folder / cell / "failed.json").write_text('{"stage": "train"}')
    report.export(folder, dest)
    assert (dest / cell / "failed.json").exists()
    (folder / cell / "failed.json").unlink()
    (folder / cell / "done.json").write_text("{}")
    (dest / "notes.md").write_text("kept")  # files the study never had are not the export's to delete
    report.export(folder, dest)
    assert not (dest / cell / "failed.json").exists()
    assert (dest / cell / "done.json").read_text() == "{}"
    assert (dest / "notes.md").read_text() == "kept"


def test_reuse_takes_real_runs_a_source_with_its_checkpoint_and_a_scratch_run_from_an_export(tmp_path):
    import evaluate
    import train
    from slac import checkpoint
    from transfer import runner

    spec = check_spec({**BASE, "target_steps": 100})
    other, out = tmp_path / "screen", tmp_path / "study"
    other.mkdir(), out.mkdir()
    (other / "spec.yaml").write_text(yaml.safe_dump(spec))
    trained = {c.id: c for c in grid.build(spec, other, sys.executable)}
    ft = "finetune/none/toy-hazard-colour/s0"
    for cell_id in ("source/none/s0", "scratch/toy-hazard-colour/s0", ft):  # each cell's own commands, 100 steps
        c = trained[cell_id]
        assert train.main(c.stages[0]["new"][2:]) == 0
        for stage in c.stages[1:]:
            assert evaluate.main(stage["argv"][2:]) == 0
        (c.dir / "done.json").write_text(json.dumps({"id": c.id, "exit_code": 0}))
    report.export(other, tmp_path / "exported")  # its small files: no checkpoints
    cells = grid.build(spec, out, sys.executable)
    lines = []
    # the first study named that has a match: the export for the scratch run, the study for the source;
    # the fine-tune from the study its source came from, though the export (named first) has its files too
    copied = runner.reuse_runs(cells, out, [tmp_path / "exported", other], echo=lines.append)
    assert copied == ["source/none/s0", ft, "scratch/toy-hazard-colour/s0"]
    assert lines[-1] == f"reuse: 3 run(s) copied (1 from {tmp_path / 'exported'}, 2 from {other})"
    assert json.loads((out / ft / "done.json").read_text())["reused_from"] == str(other / ft)
    assert (out / ft / "metrics.jsonl").read_text() == (other / ft / "metrics.jsonl").read_text()
    assert any("training code" in ln or "cannot be compared" in ln for ln in lines)  # the code it was trained by
    scratch = out / "scratch/toy-hazard-colour/s0"
    scratch_done = json.loads((scratch / "done.json").read_text())
    assert scratch_done["reused_from"] == str(tmp_path / "exported" / "scratch/toy-hazard-colour/s0")
    # without its checkpoint, the code that trained it is read from the run's provenance.jsonl
    assert scratch_done["code_version"] == checkpoint.code_version() != "unknown"
    assert (scratch / "final_eval.json").read_text() == (trained["scratch/toy-hazard-colour/s0"].dir /
                                                         "final_eval.json").read_text()
    assert runner.cell_state(next(c for c in cells if c.arm == "scratch"), out) == "done"
    # refused: a source without its checkpoint, a scratch run evaluated otherwise than the spec says
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    other_eval = grid.build(check_spec({**BASE, "target_steps": 100, "eval_episodes": 2}), fresh, sys.executable)
    lines.clear()
    assert runner.reuse_runs(other_eval, fresh, [tmp_path / "exported"], echo=lines.append) == []
    assert any("source/none/s0: not reused, no usable checkpoint" in ln for ln in lines), lines
    assert any("scratch/toy-hazard-colour/s0: not reused, its final_eval.json differs: 1 episodes at seed 0, "
               "not 2 at 0" in ln for ln in lines), lines
    state = checkpoint.load(out / "source/none/s0")  # what the zero-shot and fine-tune cells take
    assert state["counters"]["step"] == 100 and state["config"]["seed"] == 0
    # a fine-tune is not copied onto a source that did not come from its study: the same config trained
    # again is another agent; nor where its own config differs (here the fine-tune's steps)
    lines.clear()
    assert runner.reuse_runs(other_eval, fresh, [other], echo=lines.append, dry_run=True) == ["source/none/s0"]
    assert any(ln.startswith(f"reuse: {ft}: not reused, its final_eval.json differs: 1 episodes at seed 0, not 2")
               for ln in lines), lines
    own = tmp_path / "own"
    cells = grid.build(spec, own, sys.executable)
    c = next(c for c in cells if c.id == "source/none/s0")
    shutil.copytree(other / "source/none/s0", c.dir)  # as if trained here: no reused_from
    lines.clear()
    assert runner.reuse_runs(cells, own, [other], echo=lines.append) == ["scratch/toy-hazard-colour/s0"]
    assert f"reuse: {ft}: its source run is this study's own: it trains here" in lines, lines
    longer = grid.build({**spec, "target_steps": 200}, tmp_path / "longer", sys.executable)
    lines.clear()
    assert runner.reuse_runs(longer, tmp_path / "longer", [other], echo=lines.append, dry_run=True) == \
        ["source/none/s0", "scratch/toy-hazard-colour/s0"]
    differs = f"reuse: {ft}: not reused, its config differs: train.steps: 100 -> 200"
    assert any(ln.startswith(differs) for ln in lines), lines
