"""The ``--config FILE.yaml`` of the scripts in ``baselines/``: a YAML mapping read with limits.

Every way a config file can be unusable is one :class:`~finer_datasets.errors.UsageError` naming
the file: missing or unreadable, larger than ``max_bytes``, not UTF-8, not YAML, not a mapping
(e.g. a list), or an alias "bomb" (anchors and aliases that expand to more than ``max_nodes``
nodes: YAML's "billion laughs"; ``yaml.safe_load`` shares aliased nodes, but anything that walks
the result, printing included, would expand them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finer_datasets.errors import UsageError

__all__ = ["load_yaml_mapping", "MAX_CONFIG_BYTES", "MAX_CONFIG_NODES"]

MAX_CONFIG_BYTES = 1_000_000
MAX_CONFIG_NODES = 100_000


def _expanded_nodes(root: Any, limit: int) -> int:
    """Nodes of the document with every alias expanded, counted without expanding (memoised per
    node); stops counting past ``limit``."""
    import yaml

    sizes: dict[int, int] = {}
    order, stack = [], [root]
    while stack:  # iterative post-order over the node graph (aliases make it a DAG)
        node = stack.pop()
        if id(node) in sizes:
            continue
        sizes[id(node)] = -1
        order.append(node)
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(part for pair in node.value for part in pair)
    for node in reversed(order):
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        sizes[id(node)] = min(limit + 1, 1 + sum(sizes[id(child)] for child in children))
    return sizes[id(root)]


def load_yaml_mapping(path: str | Path, *, option: str = "--config", max_bytes: int = MAX_CONFIG_BYTES,
                      max_nodes: int = MAX_CONFIG_NODES) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` (an empty file is ``{}``); keys are strings."""
    import yaml

    path = Path(path)
    where = f"{option} {path}"
    try:
        if not path.is_file():
            raise UsageError(f"{where}: {'a folder, not a file' if path.is_dir() else 'no such file'}")
        size = path.stat().st_size
        if size > max_bytes:
            raise UsageError(f"{where}: {size} bytes; a config file is at most {max_bytes}")
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None and _expanded_nodes(root, max_nodes) > max_nodes:
            raise UsageError(f"{where}: expands to more than {max_nodes} YAML nodes through its aliases "
                             f"(a 'billion laughs' file?); write the values out")
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise UsageError(f"{where}: not valid YAML{at} ({problem})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(f"{where}: expected a mapping of option names to values, got a {type(loaded).__name__}")
    bad = [key for key in loaded if not isinstance(key, str)]
    if bad:
        raise UsageError(f"{where}: option names must be strings, not {bad[0]!r}")
    return loaded
