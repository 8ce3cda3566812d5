"""The regression guard of the shipped agents (agents/README.md): each agent in agents/ still loads with the
current code and still does its task under the budget on fixed episode seeds. A change of the model or
agent code that fails this must ship a retrained agent or a conversion in the same commit."""

import json
from pathlib import Path

import pytest
from script_modules import load_script

import evaluate
from slac import checkpoint

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p for p in (ROOT / "agents").iterdir() if (p / checkpoint.AGENT).is_file())
EPISODES = 10  # fixed seeds 0's first ten episodes (the card's evaluation has these ten among its twenty)
# per source env: the return an agent must beat and the mean cost it must stay under
BAR = {"dmc-cartpole-tilted": {"return": 674.0, "cost": 25.0}}  # 674: doing nothing (docs/results.md); 25: the budget

demo_agent = load_script("scripts", "demo_agent")


def test_the_demos_agent_is_shipped():
    assert ROOT / demo_agent.AGENT in SHIPPED, f"make demo needs {demo_agent.AGENT}/{checkpoint.AGENT}"


@pytest.mark.parametrize("agent", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_agent_still_does_its_task_under_the_budget(agent, tmp_path):
    card = json.loads((agent / "card.json").read_text())
    env = card["env"]
    assert env in BAR, f"{agent.name}: add the bar of its env {env!r} to this test"
    saved = checkpoint.load(agent)  # weights_only: no pickled code runs
    assert saved["config"]["env"] == env
    out = tmp_path / "eval.json"
    assert evaluate.main(["--checkpoint", str(agent), "--episodes", str(EPISODES), "--seed", "0",
                          "--device", "cpu", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["env"] == env and result["episodes"] == EPISODES
    ret, cost = result["return"]["mean"], result["cost"]["mean"]
    assert ret > BAR[env]["return"] and cost < BAR[env]["cost"], \
        f"{agent.name} in {env}: return {ret:.1f}, cost {cost:.1f} over {EPISODES} episodes; bar: return above " \
        f"{BAR[env]['return']}, cost under {BAR[env]['cost']}. Did a change of the networks break trained agents?"
