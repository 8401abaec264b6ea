"""The README's two commands work on a fresh machine: each installs the extras it needs (the test command needs
``dev``: pytest and the plugins pyproject's pytest settings use), and CI runs the README's test command."""

from __future__ import annotations

import re
import tomllib

from compress.config import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()
PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def two_commands() -> list[str]:
    section = README.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [b.strip() for b in blocks[:2]]


def extras(command: str) -> set[str]:
    """Extras of every ``pip install ... -e ".[a,b]"`` in the command (none installed = empty set)."""
    found = re.findall(r"pip install[^&]*?-e \"?\.\[([^\]]*)\]", command)
    return {e.strip() for group in found for e in group.split(",")}


def test_the_test_command_installs_what_pytest_needs_before_running_it() -> None:
    setup, tests = two_commands()
    assert "pytest" in tests and "pytest" not in setup
    assert tests.index("pip install") < tests.index("pytest")
    needed = {"cpu", "serve", "train", "dev"}  # the tests import onnxruntime, fastapi, torch, pytest plugins
    assert needed <= extras(tests), f"the test command installs {sorted(extras(tests))}, needs {sorted(needed)}"
    assert needed <= extras(setup), "the first command must leave a venv in which the test command runs at once"
    assert "tf" in extras(tests), "tests/e2e/test_imported_keras.py trains a Keras model: the test command installs tf"


def test_dev_extra_has_pytest_and_the_plugins_the_pytest_settings_use() -> None:
    dev = " ".join(PYPROJECT["project"]["optional-dependencies"]["dev"])
    opts = PYPROJECT["tool"]["pytest"]["ini_options"]
    assert "pytest>=" in dev
    if "timeout" in opts:  # --strict-config rejects the key unless pytest-timeout is installed
        assert "pytest-timeout" in dev
    if "asyncio_mode" in opts:
        assert "pytest-asyncio" in dev


def test_ci_runs_the_readme_test_command() -> None:
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert two_commands()[1].split("&& ", 1)[1] in ci  # the README's command after activating the venv
