"""Parse SNAP graph XML (gpt's format) safely into a :class:`Graph`.

The format, as gpt reads it::

    <graph id="g">
      <version>1.0</version>
      <node id="Read">
        <operator>Read</operator>
        <sources/>
        <parameters class="com.bc.ceres.binding.dom.XppDomElement">
          <file>${input}</file>
        </parameters>
      </node>
      <node id="Write">
        <operator>Write</operator>
        <sources><sourceProduct refid="Read"/></sources>
        <parameters><file>${output}</file></parameters>
      </node>
      <applicationData id="Presentation">...</applicationData>
    </graph>

Graph files are untrusted: they are parsed with :mod:`defusedxml`, which
refuses DTDs, entity declarations (billion-laughs bombs) and external
entities. Variables (``${name}`` or ``$name``) are substituted in text and
attribute values *after* parsing, so a value can never inject XML.
"""

from __future__ import annotations

import re
import stat
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import GraphError
from .limits import MAX_GRAPH_BYTES, MAX_GRAPH_DEPTH, MAX_GRAPH_NODES
from .xmlsafe import parse_untrusted_xml

SUPPORTED_VERSION = "1.0"

#: Placeholders that belong to operators (Collocate's rename patterns), not to
#: the graph: left untouched by variable substitution, as gpt does.
RESERVED_PLACEHOLDERS = frozenset(
    {"ORIGINAL_NAME", "SLAVE_NUMBER_ID", "SECONDARY_NUMBER_ID", "MASTER_NUMBER_ID", "REFERENCE_NUMBER_ID"}
)

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.\-]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class Node:
    """A graph node.

    Attributes
    ----------
    id : str
    operator : str
        Operator alias (``Read``, ``BandMaths``...).
    sources : list of (str, str)
        ``(source name, referenced node id)`` in document order.
    parameters : dict
        Raw parameter values: text (None when empty) or, for nested
        elements, a list of ``(tag, value)`` pairs.
    """

    id: str
    operator: str
    sources: list[tuple[str, str]] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    """A parsed graph: nodes in document order plus kept application data."""

    id: str
    nodes: dict[str, Node]
    application_data: list[ET.Element] = field(default_factory=list)
    path: str | None = None

    def variables(self) -> set[str]:
        """Names of the ``${var}`` placeholders used by the nodes."""
        found: set[str] = set()
        for node in self.nodes.values():
            for value in _walk_values(node.parameters):
                found.update(_names(value))
            for _, ref in node.sources:
                found.update(_names(ref))
        return found - RESERVED_PLACEHOLDERS

    def substitute(self, variables: Mapping[str, str]) -> "Graph":
        """A copy with every variable replaced; an unresolved one is an error."""
        missing = sorted(n for n in self.variables() if n not in variables)
        if missing:
            raise GraphError(
                "unresolved graph variable(s): "
                + ", ".join("${" + m + "}" for m in missing)
                + "; give them with -P" + missing[0] + "=VALUE"
            )
        nodes = {}
        for nid, node in self.nodes.items():
            nodes[nid] = Node(
                id=node.id,
                operator=node.operator,
                sources=[(name, _subst(ref, variables)) for name, ref in node.sources],
                parameters={k: _subst_value(v, variables) for k, v in node.parameters.items()},
            )
        return Graph(self.id, nodes, self.application_data, self.path)

    def check(self) -> list[str]:
        """Check references, cycles and depth; return node ids in topological order.

        Iterative (a depth-first walk with an explicit stack), so no graph
        shape can exhaust Python's recursion limit.

        Raises
        ------
        GraphError
            An unknown source, a cycle, or a chain of sources longer than
            :data:`~snap_operators.limits.MAX_GRAPH_DEPTH`.
        """
        for node in self.nodes.values():
            for name, ref in node.sources:
                if ref not in self.nodes:
                    raise GraphError(
                        f"node '{node.id}': source '{name}' refers to unknown node '{ref}'; "
                        f"nodes: {', '.join(self.nodes)}"
                    )
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = on the path being walked, 2 = done
        for start in self.nodes:
            if state.get(start) == 2:
                continue
            path, next_source = [start], [0]
            state[start] = 1
            while path:
                nid = path[-1]
                sources = self.nodes[nid].sources
                if next_source[-1] < len(sources):
                    ref = sources[next_source[-1]][1]
                    next_source[-1] += 1
                    s = state.get(ref)
                    if s == 1:
                        cycle = path[path.index(ref):] + [ref]
                        raise GraphError("graph has a cycle: " + " -> ".join(cycle))
                    if s is None:
                        state[ref] = 1
                        path.append(ref)
                        next_source.append(0)
                    continue
                state[nid] = 2
                order.append(nid)
                path.pop()
                next_source.pop()
        depth: dict[str, int] = {}
        for nid in order:  # sources come first
            depth[nid] = 1 + max((depth[ref] for _, ref in self.nodes[nid].sources), default=0)
            if depth[nid] > MAX_GRAPH_DEPTH:
                raise GraphError(f"node '{nid}' is at the end of a chain of more than {MAX_GRAPH_DEPTH} nodes "
                                 f"(limit MAX_GRAPH_DEPTH); split the graph into several runs")
        return order

    def upstream(self, node_ids: list[str]) -> set[str]:
        """Node ids the given nodes depend on, themselves included."""
        seen: set[str] = set()
        stack = list(node_ids)
        while stack:
            nid = stack.pop()
            if nid in seen:
                continue
            seen.add(nid)
            stack.extend(ref for _, ref in self.nodes[nid].sources)
        return seen


def _names(text: str | None) -> set[str]:
    if not text:
        return set()
    return {a or b for a, b in _VAR.findall(text)}


def _subst(text: str | None, variables: Mapping[str, str]) -> str | None:
    if text is None:
        return None

    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name in RESERVED_PLACEHOLDERS or name not in variables:
            return m.group(0)
        return str(variables[name])

    return _VAR.sub(repl, text)


def _subst_value(value: Any, variables: Mapping[str, str]) -> Any:
    if value is None or isinstance(value, str):
        return _subst(value, variables)
    return [(tag, _subst_value(v, variables)) for tag, v in value]


def _walk_values(params: Any):
    if params is None or isinstance(params, str):
        yield params
        return
    items = params.items() if isinstance(params, dict) else params
    for _, v in items:
        yield from _walk_values(v)


def _element_value(el: ET.Element) -> Any:
    children = list(el)
    if not children:
        text = (el.text or "").strip()
        return text if text else None
    return [(c.tag, _element_value(c)) for c in children]


def parse_graph(source: str | Path, *, text: str | None = None) -> Graph:
    """Parse a graph XML file (or `text`) without substituting variables.

    Parameters
    ----------
    source : str or Path
        Path of the graph file (used in messages when `text` is given).
    text : str, optional
        XML text to parse instead of reading `source`.

    Returns
    -------
    Graph

    Raises
    ------
    GraphError
        On unreadable, malformed or unsafe XML, a wrong version, duplicate
        node ids, nodes without an operator, or a graph beyond the limits of
        :mod:`snap_operators.limits` (file size, nodes, XML nesting).

    Examples
    --------
    >>> g = parse_graph("inline", text='<graph id="g"><version>1.0</version>'
    ...   '<node id="r"><operator>Read</operator><parameters><file>${in}</file>'
    ...   '</parameters></node></graph>')
    >>> sorted(g.variables())
    ['in']
    """
    name = str(source)
    if text is None:
        data = _read_graph_file(Path(source), name)
    else:
        data = text.encode("utf-8") if isinstance(text, str) else text
        if len(data) > MAX_GRAPH_BYTES:
            raise GraphError(f"{name}: graph text is {len(data)} bytes; graphs are limited to {MAX_GRAPH_BYTES} "
                             "(MAX_GRAPH_BYTES)")
    root = parse_untrusted_xml(data, name, error=GraphError, forbid_dtd=True)
    if root.tag != "graph":
        raise GraphError(f"{name}: root element is <{root.tag}>, expected <graph>")
    version = root.find("version")
    if version is not None and (version.text or "").strip() != SUPPORTED_VERSION:
        raise GraphError(
            f"{name}: graph version {(version.text or '').strip()!r} is not supported (expected {SUPPORTED_VERSION})"
        )
    nodes: dict[str, Node] = {}
    app_data: list[ET.Element] = []
    for el in root:
        if el.tag == "applicationData":
            app_data.append(el)
            continue
        if el.tag != "node":
            continue
        if len(nodes) == MAX_GRAPH_NODES:
            raise GraphError(f"{name}: more than {MAX_GRAPH_NODES} nodes (limit MAX_GRAPH_NODES); "
                             "split the graph into several runs")
        nid = el.get("id")
        if not nid:
            raise GraphError(f"{name}: a <node> has no id attribute")
        if nid in nodes:
            raise GraphError(f"{name}: duplicate node id '{nid}'")
        op_el = el.find("operator")
        if op_el is None or not (op_el.text or "").strip():
            raise GraphError(f"{name}: node '{nid}' has no <operator>")
        nodes[nid] = Node(nid, op_el.text.strip(), _parse_sources(el.find("sources"), nid, name), _parse_params(el.find("parameters")))
    if not nodes:
        raise GraphError(f"{name}: graph has no nodes")
    return Graph(root.get("id", ""), nodes, app_data, None if text is not None else str(source))


def _read_graph_file(path: Path, name: str) -> bytes:
    """The bytes of a graph file: a regular file of at most :data:`MAX_GRAPH_BYTES`.

    Devices and FIFOs are refused before they are opened (``/dev/zero``
    never ends, a FIFO blocks until someone writes to it).
    """
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, FIFO or socket)"
            raise GraphError(f"graph file {name} is {kind}; give the path of a graph XML file")
        if st.st_size > MAX_GRAPH_BYTES:
            raise GraphError(f"graph file {name} is {st.st_size} bytes; graphs are limited to {MAX_GRAPH_BYTES} "
                             "(MAX_GRAPH_BYTES)")
        with path.open("rb") as f:
            data = f.read(MAX_GRAPH_BYTES + 1)
    except OSError as exc:
        raise GraphError(f"cannot read graph file {name}: {exc.strerror or exc}") from None
    if len(data) > MAX_GRAPH_BYTES:  # grew since stat
        raise GraphError(f"graph file {name} is over {MAX_GRAPH_BYTES} bytes (MAX_GRAPH_BYTES)")
    return data


def _parse_sources(el: ET.Element | None, nid: str, name: str) -> list[tuple[str, str]]:
    if el is None:
        return []
    out = []
    for s in el:
        ref = s.get("refid")
        if ref is None:
            ref = (s.text or "").strip()
        if not ref:
            continue
        if s.tag == "sourceProducts" and s.get("refid") is None:
            # gpt accepts a comma-separated list of node ids here.
            for i, r in enumerate(x.strip() for x in ref.split(",") if x.strip()):
                out.append(("sourceProduct" + (f".{i}" if i else ""), r))
        else:
            out.append((s.tag, ref.strip()))
    return out


def _parse_params(el: ET.Element | None) -> dict[str, Any]:
    if el is None:
        return {}
    return {c.tag: _element_value(c) for c in el}


def load_properties(path: str | Path) -> dict[str, str]:
    """Read a Java-style ``.properties`` file (``name=value`` lines), as gpt's ``-p``."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise GraphError(f"cannot read properties file {path}: {exc.strerror or exc}") from None
    props: dict[str, str] = {}
    for raw in lines:
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        m = re.match(r"([^=:\s]+)\s*[=:]\s*(.*)$", line)
        if not m:
            raise GraphError(f"{path}: cannot read line {raw!r} (expected name=value)")
        props[m.group(1)] = m.group(2).strip()
    return props
