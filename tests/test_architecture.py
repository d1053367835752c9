"""The layout is the architecture: every import runs from a higher role to a lower one.

The order is docs/architecture.md's. A new import that runs sideways or upward, or a
circle between modules, fails here before anyone has to find it in review.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "s3syncer"
# Highest first; roles on one floor do not import each other.
FLOORS: list[frozenset[str]] = [
    frozenset({"cli"}),
    frozenset({"daemon"}),
    frozenset({"web", "engine"}),
    frozenset({"config", "exec", "durable", "formats"}),
    frozenset({"obs"}),
    frozenset({"model"}),
]
# A tool a command runs, beside the daemon: only the command line starts it, and it reads
# the model's event, nothing of the daemon's.
TOOL = "replicate"
TOOL_MAY_IMPORT = frozenset({"model"})


def floor(role: str) -> int:
    """The floor of ``role``, 0 at the top."""
    return next(i for i, roles in enumerate(FLOORS) if role in roles)


def modules() -> Iterator[tuple[str, Path]]:
    """Every module of the package, by dotted name under ``s3syncer``."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def imports(name: str, path: Path) -> Iterator[str]:
    """The ``s3syncer`` modules ``name`` imports anywhere in it (TYPE_CHECKING and function
    bodies too), as dotted names under ``s3syncer``."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            target = [*base, *(node.module or "").split(".")] if node.module else base
            found = ".".join(part for part in target if part)
            if node.module is None:  # from . import x: the names may be modules
                for alias in node.names:
                    yield f"{found}.{alias.name}".lstrip(".")
            else:
                yield found
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("s3syncer."):
            yield node.module.removeprefix("s3syncer.")  # type: ignore[union-attr]


def role(module: str) -> str:
    """The folder a module lives in; "" for the package's own ``__init__``/``__main__``."""
    return module.split(".", maxsplit=1)[0] if "." in module or (PACKAGE / module).is_dir() else ""


def allowed(source: str, target: str) -> bool:
    """Whether role ``source`` may import role ``target``."""
    if target in ("", source):
        return True
    if source == TOOL:
        return target in TOOL_MAY_IMPORT
    if target == TOOL:
        return source == "cli"
    if source == "":
        return target == "cli"  # python -m s3syncer
    return floor(source) < floor(target)


def test_every_module_lives_in_a_role_folder() -> None:
    loose = [name for name, _ in modules() if role(name) == "" and name not in ("", "__main__")]
    assert loose == []
    roles = {role(name) for name, _ in modules()} - {""}
    assert roles == {TOOL}.union(*FLOORS)


@pytest.mark.parametrize("name", [name for name, _ in modules()])
def test_imports_run_down_the_floors(name: str) -> None:
    path = dict(modules())[name]
    wrong = sorted(
        target for target in set(imports(name, path)) if not allowed(role(name), role(target))
    )
    assert wrong == [], f"{name} ({role(name) or 'top'}) imports {wrong}"


def test_no_module_import_circle() -> None:
    graph = {name: set(imports(name, path)) for name, path in modules()}
    known = set(graph)
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            pytest.fail("import circle: " + " -> ".join([*trail[trail.index(name) :], name]))
        if name in done:
            return
        for target in sorted(graph[name] & known):
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
