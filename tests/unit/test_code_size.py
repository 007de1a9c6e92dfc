"""Small modules and short functions (issue 18): a module over 350 lines or a function over 60
outside the tests is named here, so it is split before it grows further."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ("contracts", "aggregates", "processor", "projections", "bench")
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 350, 60


def _modules() -> list[Path]:
    return sorted(p for package in SOURCE for p in (ROOT / package).rglob("*.py"))


def test_the_source_is_found() -> None:
    assert len(_modules()) > 50  # the check below would pass on nothing


def test_no_module_over_350_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}, f"split these modules (lines): {long}"


def test_no_function_over_60_lines() -> None:
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = lines
    assert long == {}, f"split these functions (lines, nested functions included): {long}"


def test_imports_at_the_top_outside_the_cli() -> None:
    # The CLI's commands import inside themselves so `coterm --help` starts in 0.15 s (said there).
    inside = []
    for path in _modules():
        if path.is_relative_to(ROOT / "processor" / "cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                inside += [f"{path.relative_to(ROOT)}:{n.lineno}" for n in ast.walk(node)
                           if isinstance(n, ast.Import | ast.ImportFrom)]
    assert inside == [], f"move these imports to the top of their modules: {inside}"
