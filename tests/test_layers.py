"""The packages' import direction: the core (slac) never imports the adversary (latent_adversary),
and envs never import torch (DESIGN: data flows env -> buffer -> model -> agent)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_core_module_names_the_adversary_package():
    named = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "slac").glob("*.py"))
             if "latent_adversary" in p.read_text()]
    assert named == []


def _loaded_after(imports: str) -> set[str]:
    code = f"import sys; {imports}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            check=True)
    return set(result.stdout.split())


def test_importing_the_whole_core_loads_no_adversary_and_envs_load_no_torch():
    core = "import slac.trainer, slac.run, slac.evaluation, slac.report, slac.agent_inputs, slac.learner"
    assert "latent_adversary" not in _loaded_after(core)
    assert "torch" not in _loaded_after("import envs")
