"""YAML reading with the mistakes PyYAML forgives refused: a key given twice in one mapping
(PyYAML silently keeps the last) is an error naming the file, the line and the key."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from attn_dse.errors import AttnDseError


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """SafeLoader (libyaml's parser where PyYAML has it) that refuses duplicate keys."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first at line {seen[key]})", key_node.start_mark)
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def loads(text: str, where: str) -> Any:
    """Parse YAML text; every problem is an AttnDseError naming `where` and the line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        fix = "keep one of them" if "duplicate key" in problem else "check indentation and quoting there"
        raise AttnDseError(f"malformed YAML at {line}: {problem}", where=where, fix=fix) from None


def read(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise AttnDseError(f"cannot be read ({exc.__class__.__name__})", where=str(path),
                           fix="give a readable YAML text file") from None
    return loads(text, str(path))
