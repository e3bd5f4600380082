"""Parse untrusted XML (graphs, product headers) with one set of protections.

:mod:`defusedxml` refuses entity declarations (billion-laughs bombs) and
external entities; every refusal or syntax error becomes a one-line
:class:`~snap_operators.core.errors.SnapPcError` of the caller's kind.

Example
-------
>>> parse_untrusted_xml(b"<a><b/></a>", "inline").tag
'a'
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

from .errors import ProductReadError, SnapPcError
from .limits import MAX_XML_DEPTH


def parse_untrusted_xml(
    data: bytes | str,
    where: str,
    *,
    error: type[SnapPcError] = ProductReadError,
    malformed: str = "malformed XML",
    forbid_dtd: bool = False,
) -> ET.Element:
    """Root element of XML `data`; `where` names the source in messages.

    Parameters
    ----------
    data : bytes or str
    where : str
        File name or label put in front of every error message.
    error : type of SnapPcError
        Exception raised on unsafe or malformed XML.
    malformed : str
        Wording for a syntax error (e.g. "not a valid BEAM-DIMAP header").
    forbid_dtd : bool
        Also refuse any DTD (graphs never need one).

    Raises
    ------
    SnapPcError
        Of type `error`: unsafe or malformed XML, or elements nested deeper
        than :data:`~snap_operators.core.limits.MAX_XML_DEPTH` (every later walk
        over the tree may then recurse safely).
    """
    try:
        root = DET.fromstring(data, forbid_dtd=forbid_dtd, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise error(f"{where}: unsafe XML refused ({type(exc).__name__}: DTDs and entities are not allowed)") from None
    except (ET.ParseError, ValueError) as exc:
        raise error(f"{where}: {malformed} ({' '.join(str(exc).split())})") from None
    except RecursionError:
        raise error(f"{where}: XML nested too deeply (limit MAX_XML_DEPTH = {MAX_XML_DEPTH} levels)") from None
    stack = [(root, 1)]
    while stack:
        el, depth = stack.pop()
        if depth > MAX_XML_DEPTH:
            raise error(f"{where}: XML elements nested deeper than {MAX_XML_DEPTH} levels (limit MAX_XML_DEPTH); "
                        "real graphs and product headers nest under 12")
        stack.extend((child, depth + 1) for child in el)
    return root
