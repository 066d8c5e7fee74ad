"""The package's structure: light entry points, no import circle, and the README's map matching the code."""
import ast
import json
import re
import subprocess
import sys

import pytest

from defectlib.config import config_hash, resolve_config
from defectlib.paths import project_root

PACKAGE = project_root() / "defectlib"
#: Imports allowed inside functions: the command line defers its machinery so that --help is instant,
#: and genuinely optional dependencies load only where they are used.
DEFERRED_OK = {"cli": None, "export": {"onnx", "onnxruntime"}, "viz": {"myst_nb", "IPython"}, "tables": {"IPython"}}


def _imports(module: str) -> tuple[set[str], list[tuple[str, int]]]:
    """Package modules a module imports at its top, and every import inside a function ``(name, line)``."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    top, inner = set(), []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module.split(".")[0]]
        else:
            names = [a.name.split(".")[0] for a in node.names]
        if node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                top |= set(names)
        else:
            inner += [(n, node.lineno) for n in names]
    return top, inner


def _modules() -> list[str]:
    return sorted(p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("__"))


def _readme_map() -> dict[str, set[str]]:
    """``{module: modules it may import}`` from the README's Layout section."""
    text = (project_root() / "README.md").read_text()
    section = text[text.index("## Layout"):]
    rows = re.findall(r"^  (\w+)\s{2,}.+?\s->\s(.+)$", section, re.M)
    return {m: set() if deps.strip() == "nothing" else {d.strip() for d in deps.split(",")} for m, deps in rows}


def test_import_defectlib_and_the_cli_help_load_no_torch():
    code = ("import sys, defectlib, defectlib.cli; defectlib.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'numpy', 'cv2', 'pandas') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=project_root())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    helped = subprocess.run([sys.executable, "-X", "importtime", "-m", "defectlib", "--help"],
                            capture_output=True, text=True, cwd=project_root())
    assert helped.returncode == 0 and "usage:" in helped.stdout
    assert not re.search(r"\|\s+torch$", helped.stderr, re.M), "python -m defectlib --help imported torch"


def test_no_import_circle_between_modules():
    graph = {m: _imports(m)[0] for m in _modules()}
    done: set[str] = set()

    def visit(m: str, path: list[str]) -> None:
        if m in path:
            raise AssertionError(f"import circle: {' -> '.join(path[path.index(m):] + [m])}")
        if m in done:
            return
        for n in graph.get(m, ()):
            visit(n, path + [m])
        done.add(m)

    for m in graph:
        visit(m, [])


def test_imports_sit_at_the_top_except_deferred_ones_that_say_why():
    for module in _modules():
        allowed = DEFERRED_OK.get(module, set())
        inner = _imports(module)[1]
        if allowed is None:
            continue
        bad = [(n, line) for n, line in inner if n not in allowed]
        assert not bad, f"defectlib/{module}.py imports inside functions: {bad}"


def test_the_readme_map_names_every_module_and_its_imports():
    declared = _readme_map()
    assert set(declared) == set(_modules()), "README Layout: modules missing or extra"
    for module, allowed in declared.items():
        top, inner = _imports(module)
        used = top | {n for n, _ in inner if (PACKAGE / f"{n}.py").exists()}
        assert used <= allowed, f"defectlib/{module}.py imports {sorted(used - allowed)}, not in the README's map"
        assert used == allowed, f"README map of {module} names {sorted(allowed - used)}, which it does not import"
    for leaf in ("errors", "classes"):
        assert declared[leaf] == set()


def test_one_version_number():
    from defectlib import __version__

    pyproject = (project_root() / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'attr = "defectlib.__version__"' in pyproject
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def _committed_records() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((project_root() / "results" / "runs").glob("*.json"))]


def test_every_committed_record_keeps_its_hash_under_the_current_schema():
    """A record is reused when its config, resolved again by today's code, hashes as it did: no run of
    the report is orphaned by a change of the schema or of the resolving code."""
    records = _committed_records()
    if not records:
        pytest.skip("no committed records")
    for r in records:
        assert config_hash(r["config"]) == r["config_hash"], r["run_id"]
        again = resolve_config(r["config"], r["config"]["profile"])
        assert config_hash(again) == r["config_hash"], f"{r['run_id']}: its config resolves to another hash today"
        assert r["run_id"] == f"{r['config']['name']}-{r['config_hash']}-fold{r['fold']}-seed{r['seed']}"
    print(f"{len(records)} committed records keep their config hash")
