"""``make demo-smoke`` (scripts/demo.py): the whole workflow on a smoke run it trains itself, as a newcomer
runs it (its default shift), so that CI keeps the smoke workflow working."""

import json

from script_modules import load_script

import envs
from slac import checkpoint
from slac.logger import read_metrics

demo = load_script("scripts", "demo")


def test_the_smoke_demo_trains_fine_tunes_evaluates_and_records(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo.main(["--episodes", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out

    source, target = checkpoint.load(out / "source"), checkpoint.load(out / "target")
    assert source["phase"] == "source" and target["phase"] == "target"
    assert target["source_checkpoint"] and target["counters"]["step"] == target["config"]["train"]["steps"]
    lifetime = [r["train/lifetime_cost"] for r in read_metrics(out / "target" / "metrics.jsonl")
                if "train/lifetime_cost" in r]
    assert lifetime and lifetime == sorted(lifetime)  # counted from the first target step, never decreasing
    result = json.loads((out / "target_eval.json").read_text())
    assert result["env"] == envs.SHIFTS["cartpole-long-pole"].target and result["episodes"] == 1
    video = out / "target_video.mp4"
    assert video.is_file() and video.stat().st_size > 0
    for where in (out / "source" / "checkpoints", out / "target_eval.json", video):
        assert str(where) in printed
