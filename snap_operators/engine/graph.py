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
entities. Variables are substituted in parameter values, source references
and operator names *after* parsing, so a value can never inject XML.

Variables follow gpt's template reader (``com.bc.ceres.util.TemplateReader``,
applied by ``GraphIO.read``), ported character for character:

* ``${key}``: ``key`` is everything up to the next ``}``; replaced when a
  variable ``key`` is set, else left as written.
* ``$key``: ``key`` starts with a Java identifier start (a letter, ``_``,
  ``$``...) and runs over identifier characters **and dots**, so
  ``$sourceProduct.1.B4`` is the key ``sourceProduct.1.B4``, not
  ``sourceProduct``; replaced only when that whole key is set, else left
  as written. ``$1.B4`` is no key at all. Band-maths references therefore
  reach the expression parser untouched.
* The character right after a replaced ``${key}`` and the one ending a
  ``$key`` are copied without being looked at (gpt's reader), so in
  ``${a}${b}`` gpt never sees ``${b}``.

gpt leaves an unset ``${name}`` in the graph, where it fails later (``Missing
source '${name}' in node 'n'``, ``Specified 'file' [${name}] does not
exist``); here an unset ``${name}`` (other than operator patterns such as
Collocate's ``${ORIGINAL_NAME}``) stops the run before any work with one line
naming it and where it is used. An unset bare ``$name`` stays as written, as
in gpt (a warning says so when it is a whole value). gpt substitutes the raw
document text; here each value is substituted on its own, so a ``${`` left
open affects only the rest of its own value.
"""

from __future__ import annotations

import logging
import re
import stat
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..core.errors import GraphError
from ..core.limits import MAX_GRAPH_BYTES, MAX_GRAPH_DEPTH, MAX_GRAPH_NODES
from ..core.xmlsafe import parse_untrusted_xml

log = logging.getLogger(__name__)

SUPPORTED_VERSION = "1.0"

#: Placeholders that belong to operators (Collocate's rename patterns), not to
#: the graph: never required; like any ``${name}``, replaced only when set (gpt).
RESERVED_PLACEHOLDERS = frozenset(
    {"ORIGINAL_NAME", "SLAVE_NUMBER_ID", "SECONDARY_NUMBER_ID", "MASTER_NUMBER_ID", "REFERENCE_NUMBER_ID"}
)

#: ``${key}`` as written (key: anything up to the next ``}``), for finding placeholders gpt's reader skips.
_BRACED = re.compile(r"\$\{([^}]*)\}")


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
        """Names of the ``${name}`` placeholders the nodes use: each must be set to run.

        Operator patterns (:data:`RESERVED_PLACEHOLDERS`) are left out. Bare
        ``$name`` forms are not listed: gpt replaces them only when set and
        otherwise leaves them as written (band-maths references such as
        ``$sourceProduct.1.B4`` are bare forms).
        """
        found: set[str] = set()
        for _, _, text in self._texts():
            found.update(k for k in _BRACED.findall(text or "") if k)
        return found - RESERVED_PLACEHOLDERS

    def mentioned(self) -> set[str]:
        """Every variable name the nodes mention, as ``${name}`` or as a bare ``$name``.

        What a ``-P`` may set to have any effect (a bare ``$a.b`` mentions
        ``a.b``, the key gpt's reader looks up).
        """
        found: set[str] = set()
        for _, _, text in self._texts():
            _, braced, bare = _template(text or "", {})
            found.update(key for _, key, _ in braced + bare if key)
        return found - RESERVED_PLACEHOLDERS

    def _texts(self):
        """``(node id, where, text)`` of every value variables are substituted in."""
        for node in self.nodes.values():
            yield node.id, "<operator>", node.operator
            for name, ref in node.sources:
                yield node.id, f"source '{name}'", ref
            for pname, value in node.parameters.items():
                for text in _walk_values(value):
                    yield node.id, f"parameter '{pname}'", text

    def substitute(self, variables: Mapping[str, str]) -> "Graph":
        """A copy with the variables replaced as gpt's template reader does (module doc).

        Raises
        ------
        GraphError
            A ``${name}`` that is not set (operator patterns excepted), or one
            that is set but that gpt's reader would not replace where it
            stands; one line naming each and where it is used.
        """
        missing: dict[str, str] = {}
        skipped: dict[str, str] = {}

        def sub(text: str | None, nid: str, where: str) -> str | None:
            if text is None:
                return None
            out, braced, bare = _template(text, variables)
            replaced = {start for start, _, done in braced if done}
            for m in _BRACED.finditer(text):
                key = m.group(1)
                if key and m.start() not in replaced and key not in RESERVED_PLACEHOLDERS:
                    (skipped if key in variables else missing).setdefault(key, f"node '{nid}' {where}")
            whole_unset = len(bare) == 1 and not bare[0][2] and len(text) == 1 + len(bare[0][1])
            if whole_unset and where.startswith("parameter") and "." not in bare[0][1]:  # most likely a forgotten -P
                log.warning("node '%s' %s is '%s', but no variable '%s' is set: it stays as written (as in gpt)",
                            nid, where, text, bare[0][1])
            return out

        nodes = {}
        for nid, node in self.nodes.items():
            sources: list[tuple[str, str]] = []
            for name, ref in node.sources:
                value = sub(ref, nid, "source 'sourceProducts'" if name == _DEFERRED_LIST else f"source '{name}'")
                if name == _DEFERRED_LIST:  # <sourceProducts>${...}</sourceProducts>: split once substituted
                    sources.extend(_split_source_products(value or ""))
                else:
                    sources.append((name, value))
            nodes[nid] = Node(
                id=node.id,
                operator=sub(node.operator, nid, "<operator>") or "",
                sources=sources,
                parameters={k: _subst_value(v, lambda t, k=k: sub(t, nid, f"parameter '{k}'")) for k, v in node.parameters.items()},
            )
        if missing:
            first, where = next(iter(missing.items()))
            how = f"-S{first}=FILE (a source product) or -P{first}=NODE_ID" if " source '" in where else f"-P{first}=VALUE"
            raise GraphError(
                "unresolved graph variable(s): "
                + ", ".join(f"${{{k}}} ({w})" for k, w in missing.items())
                + f"; give them with {how}"
            )
        if skipped:
            key, where = next(iter(skipped.items()))
            raise GraphError(
                f"${{{key}}} ({where}) is set but gpt's template reader does not replace it there: it directly "
                "follows another variable ('${a}${b}', '$a${b}'); put another character between them"
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
            :data:`~snap_operators.core.limits.MAX_GRAPH_DEPTH`.
        """
        for node in self.nodes.values():
            seen: set[str] = set()
            for name, ref in node.sources:
                if ref not in self.nodes:
                    hint = ("; gpt does not trim spaces around the ids of a <sourceProducts> list"
                            if ref.strip() in self.nodes else f"; nodes: {', '.join(self.nodes)}")
                    raise GraphError(f"node '{node.id}': source '{name}' refers to unknown node '{ref}'{hint}")
                if ref in seen:  # SourceList.addSource
                    raise GraphError(f"node '{node.id}': source '{name}' reads node '{ref}' a second time; "
                                     "gpt refuses this (duplicated source node id)")
                seen.add(ref)
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


#: Identifier characters as Java's ``Character.isJavaIdentifierStart``/``Part`` see them.
_JAVA_START = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Nl", "Sc", "Pc"})
_JAVA_PART = _JAVA_START | {"Nd", "Mn", "Mc", "Cf"}


def _java_identifier_start(c: str) -> bool:
    return unicodedata.category(c) in _JAVA_START


def _java_identifier_part(c: str) -> bool:
    o = ord(c)
    return unicodedata.category(c) in _JAVA_PART or o <= 8 or 0x0E <= o <= 0x1B or 0x7F <= o <= 0x9F


def template(text: str, variables: Mapping[str, str]) -> str:
    """`text` with its variables replaced exactly as gpt's ``TemplateReader`` does (module doc).

    Examples
    --------
    >>> template("${out}.tif $out $1.B4 $sourceProduct.1.B4 ${nope}", {"out": "x", "sourceProduct": "r"})
    'x.tif x $1.B4 $sourceProduct.1.B4 ${nope}'
    >>> template("${a}${a} $a$a", {"a": "1"})
    '1${a} $a$a'
    """
    return _template(text, variables)[0]


def _template(text: str, variables: Mapping[str, str]):
    """gpt's ``TemplateReader.read`` over one value.

    Returns the result, then ``(start, key, replaced)`` of every ``${key}``
    and of every ``$key`` the reader recognised.
    """
    out: list[str] = []
    braced: list[tuple[int, str, bool]] = []
    bare: list[tuple[int, str, bool]] = []
    i, n = 0, len(text)
    while i < n:
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        i = j
        if i + 1 == n:  # a '$' at the end
            out.append("$")
            break
        c = text[i + 1]
        if c == "{":  # ${key}: up to the next '}'; none: the rest is copied as it is
            k = text.find("}", i + 2)
            if k < 0:
                out.append(text[i:])
                break
            key = text[i + 2:k]
            value = variables.get(key)
            braced.append((i, key, value is not None))
            if value is None:
                out.append(text[i:k + 1])
                i = k + 1
            else:  # the reader copies the next character unexamined
                out.append(str(value) + text[k + 1:k + 2])
                i = k + 2
        elif _java_identifier_start(c):  # $key: identifier characters and dots
            k = i + 2
            while k < n and (text[k] == "." or _java_identifier_part(text[k])):
                k += 1
            key = text[i + 1:k]
            value = variables.get(key)
            bare.append((i, key, value is not None))
            # the character that ended the key is copied unexamined
            out.append((text[i:k] if value is None else str(value)) + text[k:k + 1])
            i = k + 1
        else:  # '$' and a character that starts no key: both copied as they are
            out.append(text[i:i + 2])
            i += 2
    return "".join(out), braced, bare


def _subst_value(value: Any, sub) -> Any:
    if value is None or isinstance(value, str):
        return sub(value)
    return [(tag, _subst_value(v, sub)) for tag, v in value]


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
        :mod:`snap_operators.core.limits` (file size, nodes, XML nesting).

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
        if s.tag == "sourceProducts":
            if s.get("refid") is not None:
                # SourceList.Converter reads <sourceProducts> as a list in its text only: gpt drops this source
                raise GraphError(
                    f"{name}: node '{nid}': <sourceProducts refid=\"{ref}\"/> is ignored by gpt (it reads "
                    f"<sourceProducts> as a comma-separated list of node ids in its text); write "
                    f"<sourceProduct refid=\"{ref}\"/> or <sourceProducts>{ref}</sourceProducts>"
                )
            # gpt accepts a comma-separated list of node ids here, split after the variables
            # are substituted (${sourceProducts} is the list of gpt's positional sources).
            if "$" in ref:
                out.append((_DEFERRED_LIST, ref))
            else:
                out.extend(_split_source_products(ref))
        else:
            out.append((s.tag, ref.strip()))
    return out


#: Source name of a ``<sourceProducts>`` list that holds variables, until :meth:`Graph.substitute` splits it.
_DEFERRED_LIST = "sourceProducts[]"


def _split_source_products(text: str) -> list[tuple[str, str]]:
    """``sourceProducts0``, ``sourceProducts1``, ... from gpt's comma-separated list of node ids.

    As ``SourceList.Converter``: the text is trimmed, then split at commas
    with ``StringTokenizer`` (empty items dropped, items *not* trimmed).
    """
    refs = [x for x in text.strip().split(",") if x]
    return [(f"sourceProducts{i}", r) for i, r in enumerate(refs)]


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


def load_parameters(path: str | Path) -> dict[str, Any]:
    """An operator's parameters from gpt's ``-p`` file: ``name=value`` lines, or XML.

    As gpt's ``CommandLineTool`` (``-p`` "a (Java Properties) file ... or a XML
    file containing a parameter DOM for the operator"): a file whose text
    starts with ``<`` is XML; the children of its root element (any name,
    usually ``<parameters>``) are the parameters, nested ones such as
    BandMaths' ``targetBands/targetBand`` included. The XML is parsed as
    safely as graphs are.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise GraphError(f"cannot read parameter file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_GRAPH_BYTES:
        raise GraphError(f"parameter file {path} is {len(data)} bytes; limited to {MAX_GRAPH_BYTES} (MAX_GRAPH_BYTES)")
    if not data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return dict(load_properties(path))
    root = parse_untrusted_xml(data, str(path), error=GraphError, forbid_dtd=True)
    return _parse_params(root)
