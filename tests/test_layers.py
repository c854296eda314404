"""The house rules, read off the source so that they hold from now on: the layers of pyproject.toml's
import-linter contracts (and that they can fail), no import cycle, no module over 300 lines and no
function over 80 in src/."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from .conftest import ROOT, project_env

SRC = ROOT / "src" / "divdistill"
LINT = str(Path(sys.executable).parent / "lint-imports")


def lint(src_parent: Path) -> subprocess.CompletedProcess:
    """lint-imports with the repository's contracts over the package under ``src_parent``."""
    env = {**project_env(), "PYTHONPATH": str(src_parent)}  # before the editable install's path
    return subprocess.run([LINT, str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_layer_contracts_hold():
    p = lint(ROOT / "src")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "0 broken" in p.stdout and "layers KEPT" in p.stdout


@pytest.mark.parametrize("module, forbidden", [
    ("generator/pretrain.py", "from ..method.difffit import apply_difffit"),
    ("report/html.py", "from ..tracking.parents import nest_seed_runs"),
    ("evaluate/trainer.py", "from ..generator.latents import decode"),
    ("data/datasets.py", "from ..jobs.common import imported"),
])
def test_a_forbidden_import_breaks_the_contracts(tmp_path, module, forbidden):
    """The contracts are not vacuous: each "never" arrow re-added to a copy of the package fails."""
    pkg = shutil.copytree(SRC, tmp_path / "divdistill", ignore=shutil.ignore_patterns("__pycache__"))
    path = pkg / module
    lines = path.read_text().splitlines(keepends=True)
    after = ast.parse("".join(lines)).body[0].end_lineno  # the module docstring's last line
    path.write_text("".join([*lines[:after], f"{forbidden}  # noqa: F401\n", *lines[after:]]))
    p = lint(tmp_path)
    assert p.returncode != 0 and "broken" in p.stdout, p.stdout[-2000:]
    assert f"divdistill.{module[:-3].replace('/', '.')} ->" in p.stdout


def test_no_import_cycle():
    graph = grimp.build_graph("divdistill")
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            assert not graph.chain_exists(importer=imported, imported=module), \
                f"import cycle: {module} <-> {imported} ({graph.find_shortest_chain(imported, module)})"


def test_no_module_over_300_lines_and_no_function_over_80():
    too_long = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        rel = path.relative_to(ROOT)
        if (n := len(text.splitlines())) > 300:
            too_long.append(f"{rel}: {n} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if (n := node.end_lineno - node.lineno + 1) > 80:
                    too_long.append(f"{rel}:{node.lineno} {node.name}(): {n} lines")
    assert not too_long, "\n".join(too_long)
