"""pyproject.toml, requirements*.txt and the Makefile agree: one list of pins, `pip install .` gets it."""

import tomllib
from pathlib import Path

from setuptools.config.pyprojecttoml import read_configuration

ROOT = Path(__file__).resolve().parent.parent
NO_DEPS = ("safety-gymnasium==1.0.0", "gymnasium-robotics==1.2.2")  # their pins cannot install on Python 3.11


def pins(path: Path) -> list[str]:
    """A requirements file's requirement lines, comments and blank lines dropped."""
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pyproject_dependencies_are_the_requirements_pins():
    project = pyproject()["project"]
    assert "dependencies" not in project and "dependencies" in project["dynamic"], "read from requirements.txt"
    resolved = read_configuration(ROOT / "pyproject.toml")["project"]  # what setuptools builds the metadata from
    assert resolved["dependencies"] == pins(ROOT / "requirements.txt")
    assert resolved["optional_dependencies"] == {"dev": pins(ROOT / "requirements-dev.txt")}


def test_requirements_are_plain_pins_setuptools_can_read():
    for name in ("requirements.txt", "requirements-dev.txt"):
        options = [line for line in pins(ROOT / name) if line.startswith("-")]
        assert not options, f"{name}: pip options cannot go in a file pyproject.toml reads: {options}"
    # a range would let pip take a newer torch, with several GB of CUDA packages
    assert "torch==2.13.0" in pins(ROOT / "requirements.txt")


def test_the_no_deps_pair_stays_out_of_the_pins_and_in_make_install():
    names = {pin.split("=")[0].split("<")[0].split(">")[0].lower() for pin in pins(ROOT / "requirements.txt")}
    for pin in NO_DEPS:
        assert pin.split("==")[0] not in names
    makefile = (ROOT / "Makefile").read_text()
    assert f"pip install -q --no-deps {' '.join(NO_DEPS)}" in makefile
    order = [makefile.index(step) for step in ("-r requirements.txt", "--no-deps safety-gymnasium",
                                               "--no-deps -e .")]
    assert order == sorted(order), "make install: the pins, then the --no-deps pair, then the project"


def test_every_top_level_package_is_packaged_and_first_party():
    packages = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))
    config = pyproject()
    assert sorted(config["tool"]["setuptools"]["packages"]) == packages
    assert sorted(config["tool"]["ruff"]["lint"]["isort"]["known-first-party"]) == packages
