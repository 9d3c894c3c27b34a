"""Render, validate and parse Zoiper configuration and error documents.

A configuration "tree" mirrors the XML:

    {"accounts": [{"username": "alice", ..., "codecs": [{"codec_id": 0}], "stun": {...}}],
     "diagnostics": {"enable_debug_log": False}}

Options left out of the tree are left out of the document, so the phone keeps
its own defaults. Any section dict may hold EXTRA, a dict of options the schema
does not know yet (newer app versions); they are written after the known ones.

Every function takes the Dialect the document is for (Android by default):
its schema decides which sections and options exist, and its render plan,
built once per dialect, is what the walk follows.

Rendering goes through the same walk as validation, so an invalid tree can
never become a document. The output is assembled from escaped text, not built
with lxml, because it is on the request path; lxml parses it back in the tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from lxml import etree

from bridge.zoiper.dialects import ANDROID, Dialect
from bridge.zoiper.plan import EXTRA, Plan, RequiredRule
from bridge.zoiper.schema import (
    _NOT_XML_CHAR,
    SchemaError,
    SectionSpec,
    xml_text_ok,
)

__all__ = [
    "EXTRA",
    "REQUIRED",
    "extra_name_problem",
    "parse_config",
    "parse_error",
    "render_config",
    "render_error",
    "validate",
]

# Android's rule, kept for callers from before dialects: use `dialect.required`.
REQUIRED: Mapping[str, tuple[str, ...]] = ANDROID.required

_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>\n'
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_SPECIAL = re.compile("[&<>\r]")
# A bare CR would come back as LF from any XML parser, so it is written as a reference.
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})

Tree = dict[str, Any]
_MISSING: Any = object()


def _escape(text: str) -> str:
    return text.translate(_ESCAPES) if _SPECIAL.search(text) else text


def _walk(plan: Plan, data: Any, out: list[str]) -> None:
    """Check one section dict and append its canonical XML to `out`.

    Paths in errors are relative to this section; callers prefix their part
    on the way out, so the happy path never builds a path string.
    """
    if not isinstance(data, dict):
        raise SchemaError("", f"expected a table of <{plan.name}> options, "
                              f"got {type(data).__name__}")
    if not plan.known.issuperset(data):
        _unknown(plan, data)
    get = data.get
    for name, check, fast, sub, many, escape, open_, close, empty in plan.steps:
        value = get(name, _MISSING)
        if value is _MISSING:
            continue
        if check is not None:
            element = None
            if fast:
                table = fast.get(type(value))
                if table is not None:
                    element = table.get(value)
            if element is None:
                text = check(value)
                if escape:
                    text = _escape(text)
                element = f"{open_}{text}{close}" if text else empty
            out.append(element)
        elif many:
            if not isinstance(value, list):
                raise SchemaError(name, f"expected a list of <{sub.name}> tables, "
                                        f"got {type(value).__name__}")
            out.append(open_)
            for i, item in enumerate(value):
                out.append(sub.open)
                try:
                    _walk(sub, item, out)
                except SchemaError as exc:
                    raise _within(f"{name}[{i}]", exc) from None
                out.append(sub.close)
            out.append(close)
        else:
            out.append(open_)
            try:
                _walk(sub, value, out)
            except SchemaError as exc:
                raise _within(name, exc) from None
            out.append(close)
    if EXTRA in data:
        _extra(plan, data[EXTRA], out)
    if plan.required is not None:
        _required(plan.required, data)


def _within(prefix: str, exc: SchemaError) -> SchemaError:
    return SchemaError(f"{prefix}.{exc.path}" if exc.path else prefix, exc.message)


def _unknown(plan: Plan, data: dict[Any, Any]) -> None:
    key = next(k for k in data if k not in plan.known)
    raise SchemaError(str(key), f"<{plan.name}> has no option {key!r}; put options "
                                f"the schema does not know under {EXTRA!r}")


def extra_name_problem(spec: SectionSpec, name: object) -> str | None:
    """Why `name` cannot be an extra option of `spec`'s section, or None if it can."""
    if not isinstance(name, str) or not _XML_NAME.fullmatch(name) or name[:3].lower() == "xml":
        return (f"{name!r} is not a usable element name (letters, digits, '_', '-', '.'; "
                f"not starting with a digit or 'xml')")
    if spec.option(name) is not None or spec.section(name) is not None:
        return f"<{spec.name}> already defines {name!r}; set it directly, not as an extra"
    return None


def _extra(plan: Plan, extra: Any, out: list[str]) -> None:
    if not isinstance(extra, dict):
        raise SchemaError(EXTRA, f"expected a table of name -> text, got {type(extra).__name__}")
    for name, value in extra.items():
        path = f"{EXTRA}.{name}"
        if (problem := extra_name_problem(plan.spec, name)) is not None:
            raise SchemaError(path if isinstance(name, str) and name in plan.known else EXTRA,
                              problem)
        if not isinstance(value, str):
            raise SchemaError(path, f"expected text, got {type(value).__name__}")
        if not xml_text_ok(value):
            raise SchemaError(path, "expected text XML can carry; it holds a "
                                    "control character or non-character")
        out.append(f"<{name}>{_escape(value)}</{name}>" if value else f"<{name}/>")


def _required(rule: RequiredRule, account: dict[str, Any]) -> None:
    default, required = rule
    protocol = account.get("protocol", default)  # already checked against the enumeration
    for name in required[protocol]:
        value = account.get(name)
        if value is None or not str(value).strip():
            raise SchemaError(name, f"an account with protocol {protocol} "
                                    f"needs a non-empty {name}")


def _render(tree: Any, plan: Plan) -> list[str]:
    if not isinstance(tree, dict):
        raise SchemaError("", f"expected a table with 'accounts', got {type(tree).__name__}")
    accounts = tree.get("accounts")
    if accounts is None or (isinstance(accounts, list) and not accounts):
        raise SchemaError("accounts", "at least one account is required")
    out = [_DECLARATION, plan.open]
    _walk(plan, tree, out)
    out.append(plan.close)
    return out


def validate(tree: Tree, dialect: Dialect = ANDROID) -> None:
    """Raise SchemaError unless `tree` would render to a document `dialect` accepts."""
    _render(tree, dialect.plan)


def render_config(tree: Tree, dialect: Dialect = ANDROID) -> bytes:
    """The configuration document for `tree` in `dialect`, validated, as UTF-8 bytes."""
    return "".join(_render(tree, dialect.plan)).encode()


def render_error(message: str) -> bytes:
    """The provisioning error document (code 1, the only code the phone defines).

    Never raises: characters XML cannot carry are dropped from the message.
    """
    text = _NOT_XML_CHAR.sub("", str(message))
    return f'{_DECLARATION}<error code="1">{_escape(text)}</error>'.encode()


# Parsing: for tests and the CLI, never for data from the network at runtime.


def _parse(data: bytes) -> etree._Element:
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
        remove_comments=True, remove_pis=True,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from None
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise ValueError("a document type declaration is not allowed")
    return root


def _no_text(text: str | None, path: str) -> None:
    if text and not text.isspace():
        raise SchemaError(path, f"unexpected text {text.strip()[:40]!r}")


def _leaf(elem: etree._Element, path: str) -> str:
    if elem.attrib:
        raise SchemaError(path, "attributes are not allowed")
    if len(elem):
        raise SchemaError(path, "an option cannot contain elements")
    return elem.text or ""


def _read(elem: etree._Element, spec: SectionSpec, path: str, allow_extra: bool) -> Tree:
    if elem.attrib:
        raise SchemaError(path, "attributes are not allowed")
    _no_text(elem.text, path)
    prefix = f"{path}." if path else ""
    result: Tree = {}
    extra: dict[str, str] = {}
    for child in elem:
        name = child.tag
        if not isinstance(name, str):
            raise ValueError(f"{path}: entity references are not allowed")
        _no_text(child.tail, path)
        where = prefix + name
        if name in result or name in extra:
            raise SchemaError(where, f"<{name}> appears more than once")
        sub = spec.sections.get(name)
        if name in spec.options:
            result[name] = _leaf(child, where)
        elif sub is not None and sub.item is not None:
            item = sub.item
            _no_text(child.text, where)
            if child.attrib:
                raise SchemaError(where, "attributes are not allowed")
            items = []
            for i, entry in enumerate(child):
                _no_text(entry.tail, where)
                if entry.tag != item.name:
                    raise SchemaError(where, f"<{name}> may only hold <{item.name}> elements")
                items.append(_read(entry, item, f"{where}[{i}]", allow_extra))
            result[name] = items
        elif sub is not None:
            result[name] = _read(child, sub, where, allow_extra)
        elif allow_extra:
            extra[name] = _leaf(child, where)
        else:
            raise SchemaError(where, f"<{spec.name}> has no element <{name}>")
    if extra:
        result[EXTRA] = extra
    return result


def parse_config(data: bytes, dialect: Dialect = ANDROID, *,
                 allow_extra: bool = False) -> Tree:
    """Turn a configuration document of `dialect` back into a validated tree of strings.

    Unknown elements (including those only another dialect defines) are a
    SchemaError, or with `allow_extra` are kept under EXTRA. Malformed XML,
    DOCTYPEs and entities raise ValueError.
    """
    root = _parse(data)
    spec = dialect.root
    if root.tag != spec.name:
        raise SchemaError("", f"the root element must be <{spec.name}>, not <{root.tag}>")
    tree = _read(root, spec, "", allow_extra)
    validate(tree, dialect)
    return tree


def parse_error(data: bytes) -> str:
    """The message of an error document; ValueError if `data` is not one."""
    root = _parse(data)
    if root.tag != "error" or "code" not in root.attrib:
        raise ValueError("not an error document (expected <error code=...>)")
    return root.text or ""
