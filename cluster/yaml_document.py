"""`load_document(text, where)`: a cluster file's YAML (or JSON) parsed with bounds, so that no
document can hang the reader or exhaust memory.

PyYAML's safe loader builds a YAML alias (`*a`) as a reference to the anchored node, so a
572-byte "billion laughs" document parses instantly but expands to ~10^9 values the moment
anything walks or prints it (an error message's `repr`, a `copy`, a JSON dump). Here the
composed node graph is measured before it is constructed:

- its expanded size (every node counted once per path that reaches it, aliases included, by a
  memoised walk that never expands anything) must stay within `MAX_NODES` (100,000: a
  1,000-instance list of per-instance overrides is ~15,000), and
- its nesting depth within `MAX_DEPTH` (64; a cluster file needs 5 or so).

Deeper documents than the composer's own recursion allows are refused the same way (Python's
RecursionError becomes the error line). Anchors and aliases within those bounds keep working.
"""
from __future__ import annotations

import yaml

from fleetsim.cluster.errors import InputError

MAX_NODES = 100_000
MAX_DEPTH = 64


def _measure(root: yaml.Node) -> tuple[int, int]:
    """(expanded node count, depth) of a composed node graph, without expanding aliases: each
    distinct node is visited once (an iterative post-order walk), its size the sum of its
    children's. A cycle (a recursive alias) counts as too big."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        if done:
            on_path.discard(key)
            size[key] = min(1 + sum(size[id(c)] for c in children), MAX_NODES + 1)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            continue
        if key in size:
            continue
        if key in on_path:
            return MAX_NODES + 1, 0
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)
    return size[id(root)], depth[id(root)]


def load_document(text: str, where: str, kind: str = "YAML/JSON"):
    """The parsed document of `text` (None when empty); a malformed, too large or too deeply
    nested one is an InputError naming `where`."""
    try:
        loader = yaml.SafeLoader(text)      # checks the characters first
    except yaml.YAMLError as exc:
        raise InputError(f"{where}: malformed {kind}: {str(exc).splitlines()[0]}") from None
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise InputError(f"{where}: nested too deeply (at most {MAX_DEPTH} levels)") from None
        if node is None:
            return None
        size, depth = _measure(node)
        if size > MAX_NODES:
            raise InputError(f"{where}: too large once its aliases are expanded (more than {MAX_NODES:,} values; "
                             f"a YAML alias bomb?)")
        if depth > MAX_DEPTH:
            raise InputError(f"{where}: nested too deeply ({depth} levels; at most {MAX_DEPTH})")
        return loader.construct_document(node)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:   # ValueError: e.g. a 5,000-digit integer
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{where}: malformed {kind}: {str(exc).splitlines()[0]}") from None
    finally:
        loader.dispose()
