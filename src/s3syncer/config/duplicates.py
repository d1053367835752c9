"""Find a key written twice in one YAML mapping, before the file is read for its meaning.

YAML keeps the last of two equal keys and drops the first without a word: a second
``commands:`` block silently replaces the first, ``delay: 3x`` then ``delay: 2s`` hides
the typo. The reader refuses both, naming each key path as the errors of the checker do.
"""

from __future__ import annotations

import yaml

# A mapping node's value is a list of (key node, value node) pairs.
_Pairs = list[tuple[yaml.Node, yaml.Node]]


def duplicate_keys(root: yaml.Node | None) -> list[str]:
    """One error for each key written twice in one mapping, in document order."""
    errors: list[str] = []
    seen: set[int] = set()  # an alias repeats a node: walk it once (and never loop)
    stack: list[tuple[str, yaml.Node]] = [] if root is None else [("", root)]
    while stack:
        path, node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        children: list[tuple[str, yaml.Node]] = []
        if isinstance(node, yaml.MappingNode):
            pairs: _Pairs = node.value
            errors.extend(_twice(path, pairs))
            children = [(_join(path, _name(key)), value) for key, value in pairs]
        elif isinstance(node, yaml.SequenceNode):
            items: list[yaml.Node] = node.value
            children = [(f"{path}[{index}]", item) for index, item in enumerate(items)]
        stack.extend(reversed(children))
    return errors


def _twice(path: str, pairs: _Pairs) -> list[str]:
    first_line: dict[str, int] = {}
    errors: list[str] = []
    for key, _value in pairs:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue  # a `<<` merge may repeat keys on purpose; complex keys are refused later
        line = key.start_mark.line + 1
        name = str(key.value)
        if name in first_line:
            where = _join(path, name)
            errors.append(
                f"line {line}: {where}: is written twice (first on line {first_line[name]})"
            )
        else:
            first_line[name] = line
    return errors


def _name(key: yaml.Node) -> str:
    return str(key.value) if isinstance(key, yaml.ScalarNode) else "?"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
