"""Answers from upstreams as plain Python data, and paths into them.

JSON is parsed with the standard library. XML (any Content-Type containing
"xml") is parsed with lxml with entities, DTDs and network access off, and a
document with a DOCTYPE is refused outright; it is then turned into the same
shape as JSON so one set of paths works for both:

    <accounts><account id="7"><user>1001</user></account></accounts>
    -> {"account": {"@id": "7", "user": "1001"}}

(the root element is the document; repeated child tags become a list; text
stays text; attributes get an "@", and "#text" holds the text beside them).
Namespace URIs are dropped; mixed content is not interpreted.

Paths: "data.accounts.0.user" (dots; numbers index lists) or a JSON Pointer
"/data/accounts/0/user" (RFC 6901, for keys that contain dots). "" is the
whole document.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from lxml import etree

from bridge.models import Scalar

MISSING: Any = object()

_XML_PARSER_OPTIONS = dict(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False, remove_comments=True,
                           remove_pis=True)


class Malformed(ValueError):
    """The body is not the JSON or XML it should be."""


def check_path(path: str) -> str | None:
    """Why `path` is not a usable path (for configuration checks), or None."""
    if path.startswith("/") or path == "":
        for token in path.split("/")[1:]:
            if "~" in token.replace("~0", "").replace("~1", ""):
                return f"JSON Pointer {path!r} has a '~' not followed by 0 or 1"
        return None
    if any(part == "" for part in path.split(".")):
        return f"path {path!r} has an empty part (write 'a.b', or a JSON Pointer '/a/b')"
    return None


def parent(path: str) -> str:
    """The path one step up ("" for a top-level key)."""
    sep = "/" if path.startswith("/") else "."
    return path.rpartition(sep)[0] if sep in path else ""


def _steps(path: str) -> list[str]:
    if path == "":
        return []
    if path.startswith("/"):
        return [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]]
    return path.split(".")


def select(document: Any, path: str) -> Any:
    """The value at `path`, or MISSING."""
    node = document
    for step in _steps(path):
        if isinstance(node, dict):
            node = node.get(step, MISSING)
        elif isinstance(node, list) and step.isdigit() and (step == "0" or step[0] != "0"):
            index = int(step)
            node = node[index] if index < len(node) else MISSING
        else:
            return MISSING
        if node is MISSING:
            return MISSING
    return node


def scalar(value: Any) -> Scalar | None:
    """A JSON value as an identity attribute / account field; None when it is not one."""
    if isinstance(value, str | int | bool):
        return value
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else int(value)
    return None


def parse(content: bytes, content_type: str) -> Any:
    """JSON or XML bytes to Python data; raise Malformed."""
    if "xml" in content_type.lower():
        return parse_xml(content)
    try:
        return json.loads(content)
    except (ValueError, RecursionError) as exc:
        why = type(exc).__name__
    # Raised outside the handler: the parser's message (which quotes the body) is not chained.
    raise Malformed(f"not valid JSON ({why})")


def parse_xml(content: bytes) -> Any:
    parser = etree.XMLParser(**_XML_PARSER_OPTIONS)
    failed: str | None = None
    try:
        root = etree.fromstring(content, parser)
    except etree.XMLSyntaxError as exc:
        failed = f"not well-formed XML (line {exc.lineno})"
    if failed is not None:
        raise Malformed(failed)
    if root is None:
        raise Malformed("empty XML document")
    if root.getroottree().docinfo.doctype:
        raise Malformed("XML with a DOCTYPE is refused")
    return _element(root)


def _element(element: Any) -> Any:
    children = [c for c in element if isinstance(c.tag, str)]
    text = (element.text or "").strip()
    if not children and not element.attrib:
        return text
    result: dict[str, Any] = {f"@{etree.QName(k).localname}": v
                              for k, v in element.attrib.items()}
    if text and not children:
        result["#text"] = text
    names = [etree.QName(c).localname for c in children]
    counts = Counter(names)
    for child, name in zip(children, names, strict=True):
        value = _element(child)
        if counts[name] > 1:
            result.setdefault(name, []).append(value)
        else:
            result[name] = value
    return result
