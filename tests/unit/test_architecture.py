"""The tree tells the architecture, and this keeps it true: each stage's sub-package imports only the stages
below it (the rule each `__init__` states), and no module reaches into another's private parts."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "plugins" / "servebench"
# Sub-package -> the sub-packages it may import. The modules at the top (pipeline, cli, airflow_tasks,
# local_airflow, lab) are the front doors and may import any of them; the package root only holds __version__.
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "models": {"base"},
    "servers": {"base", "models"},
    "config": {"base", "models", "servers"},
    "results": {"base", "models", "servers", "config"},
    "measure": {"base", "models", "servers", "config", "results"},
    "report": {"base", "config", "results"},
}
FRONT_DOORS = {"pipeline", "cli", "airflow_tasks", "local_airflow", "lab"}


def modules() -> dict[str, ast.Module]:
    return {str(p.relative_to(PACKAGE)): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def imported(tree: ast.Module) -> set[str]:
    """The servebench sub-packages and top-level modules a module imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "servebench":
            parts = node.module.split(".")
            names = [parts[1]] if len(parts) > 1 else [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("servebench.")]
        found.update(n for n in names if n != "__version__")
    return found


def test_the_tree_has_the_stages_and_each_says_what_it_owns() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(ALLOWED)
    for name in packages:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc and (name == "base" or "May import" in doc), (
            f"{name}/__init__.py must say what it owns and may import"
        )
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top == FRONT_DOORS


def test_imports_only_point_down_the_stages() -> None:
    wrong = []
    for path, tree in modules().items():
        stage = path.split("/")[0] if "/" in path else None
        if stage is None:
            continue  # a front door or the package root
        for target in imported(tree) - {stage}:
            if target in FRONT_DOORS or target not in ALLOWED[stage]:
                wrong.append(f"{path} imports servebench.{target}")
    assert wrong == [], "imports against the stages (see each sub-package's __init__):\n" + "\n".join(wrong)


# A library's private part, where it has no public way to do what servebench must; each with why.
LIBRARY_PRIVATES = {
    # resuming the parent run in spite of the caller's `mlflow.set_experiment` (Tracker._resumed; unit-tested)
    ("results/tracker.py", "_active_experiment_id"),
}


def test_no_module_reaches_into_another_ones_private_parts() -> None:
    """`x._name` only on self or cls: another object's private attribute (a tracker's MLflow client, a runner's
    process) is reached through its public methods."""
    wrong = []
    for path, tree in modules().items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
                and (str(path), node.attr) not in LIBRARY_PRIVATES
            ):
                wrong.append(f"{path}:{node.lineno}: .{node.attr}")
    assert wrong == []


def test_the_rule_sees_a_violation() -> None:
    """The walk itself: an upward import is found, wherever it is written."""
    tree = ast.parse("def f():\n    from servebench.report import summary\n    import servebench.measure.trial\n")
    assert imported(tree) == {"report", "measure"}
