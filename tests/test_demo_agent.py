"""scripts/demo_agent.py, the demo of a shipped agent: a table of the agent in its source env and zero-shot in
shifted targets, a short fine-tune printing its lifetime target cost, a video; on a smoke agent of toy-reach."""

import json

import pytest
from script_modules import load_script

from slac.logger import read_metrics

export_agent = load_script("scripts", "export_agent")
demo_agent = load_script("scripts", "demo_agent")
SHIFT = "toy-hazard-colour"  # toy-reach -> toy-reach-grey


@pytest.fixture(scope="module")
def agent_dir(smoke_source_run, tmp_path_factory):
    dest = tmp_path_factory.mktemp("agents") / "smoke"
    assert export_agent.main([str(smoke_source_run), str(dest)]) == 0
    return dest


def test_the_demo_tables_fine_tunes_records_and_says_what_it_measured(agent_dir, tmp_path, capsys):
    out = tmp_path / "demo"
    code = demo_agent.main(["--agent", str(agent_dir), "--targets", SHIFT, "--finetune", SHIFT,
                            "--finetune-steps", "40", "--print-every", "10", "--episodes", "2", "--workers", "1",
                            "--out", str(out)])
    printed = capsys.readouterr().out
    print(printed)  # shown with pytest -s: the demo's output
    assert code == 0

    # 1: one table, the source env and each target, with return, cost, budget and violation rate
    head = next(line for line in printed.splitlines() if line.startswith("env "))
    for column in ("return mean ± std", "cost mean ± std", "budget", "violations"):
        assert column in head
    assert any(line.startswith("toy-reach (source)") for line in printed.splitlines())
    assert any(line.startswith(f"toy-reach-grey (target of {SHIFT})") for line in printed.splitlines())
    rows = json.loads((out / "zero_shot.json").read_text())["compare"]
    assert [(r["env"], r["episodes"], r["seed"]) for r in rows] == [("toy-reach", 2, 0), ("toy-reach-grey", 2, 0)]
    assert all({"return", "cost", "budget", "violation_rate"} <= r.keys() for r in rows)

    # 2: the fine-tune printed its lifetime target cost as it went, and wrote its run directory
    run_dir = out / f"finetune-{SHIFT}"
    lines = [line for line in printed.splitlines() if "lifetime target cost" in line and "/40" in line]
    assert [int(line.split()[1].split("/")[0]) for line in lines] == [10, 20, 30, 40]
    logged = [r["train/lifetime_cost"] for r in read_metrics(run_dir / "metrics.jsonl") if "train/lifetime_cost" in r]
    assert [float(line.split("lifetime target cost")[1].split()[0]) for line in lines] == \
        pytest.approx(logged, abs=0.05)
    assert (run_dir / "checkpoints" / "latest.pt").is_file()
    assert "shortened schedule, not the study's" in printed and "ETA" in printed

    # 3: the video of the agent in the fine-tune target
    video = out / f"zero_shot_{SHIFT}.mp4"
    assert video.is_file() and video.stat().st_size > 0

    # 4: where the files are, what was measured and what was not
    for path in (out / "zero_shot.json", video, run_dir):
        assert str(path) in printed
    assert "Measured: " in printed and "over 2 episodes" in printed
    assert "Not measured: " in printed and "not the study" in printed


def test_without_the_agent_folder_it_says_none_is_shipped_and_exits_2(tmp_path, capsys):
    assert demo_agent.main(["--agent", str(tmp_path / "agents" / "none-here"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "none is shipped yet" in err and "make demo-smoke" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_shift_from_another_source_env_is_refused(agent_dir, tmp_path, capsys):
    assert demo_agent.main(["--agent", str(agent_dir), "--targets", SHIFT, "tilted-weak-motor", "--finetune", SHIFT,
                            "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "tilted-weak-motor" in err and "trained on toy-reach" in err and SHIFT in err
    assert demo_agent.main(["--agent", str(agent_dir), "--targets", SHIFT, "--out", str(tmp_path / "o")]) == 2
    assert "--finetune tilted-weak-motor" in capsys.readouterr().err  # the default fine-tune target
    assert not (tmp_path / "o").exists()
