"""The R4 narrative rules for ``text.div`` (txt-1, txt-2 and the XHTML rules of narrative.html).

A narrative is shown to people: EHRs render it in their own pages, so a script, an event
handler or a ``javascript:`` link in it runs in someone else's browser session. R4 allows only
a ``<div>`` in the XHTML namespace holding the basic formatting elements and attributes of
HTML 4 (the lists below are those of the HL7 reference validator), with some non-whitespace
content. The div is parsed as XML with lxml (libxml2): an XHTML fragment must be well-formed,
and a strict parser sees the elements a browser would, where a pattern match can be dodged.
The parser loads no DTD, expands no entity and opens no network connection.
"""

import re
import threading
from html.entities import name2codepoint

from lxml import etree

XHTML_NS = "http://www.w3.org/1999/xhtml"
_XML_NS = "http://www.w3.org/XML/1998/namespace"

_ELEMENTS = frozenset(
    """
    p br div h1 h2 h3 h4 h5 h6 a span b em i strong small big tt dfn q var abbr acronym cite
    blockquote hr address bdo kbd sub sup ul ol li dl dt dd pre table caption colgroup col
    thead tr tfoot tbody th td code samp img map area
    """.split()  # noqa: SIM905 - long word lists read best as words
)
# Allowed on every element.
_ATTRIBUTES = frozenset(
    """
    title style class id lang xml:lang xml:space dir accesskey tabindex span width align
    valign char charoff abbr axis headers scope rowspan colspan
    """.split()  # noqa: SIM905 - long word lists read best as words
)
# Allowed on one element: "element.attribute".
_ELEMENT_ATTRIBUTES = frozenset(
    """
    a.href a.name a.charset a.type a.hreflang a.rel a.rev a.shape a.coords img.src
    img.border img.alt img.longdesc img.height img.width img.usemap img.ismap
    blockquote.cite q.cite map.name area.shape area.coords area.href area.nohref area.alt
    table.summary table.width table.border table.frame table.rules table.cellspacing
    table.cellpadding pre.space td.nowrap
    """.split()  # noqa: SIM905 - long word lists read best as words
)
_URL_ATTRIBUTES = frozenset(
    """
    a.href area.href img.src img.longdesc img.usemap blockquote.cite q.cite
    """.split()  # noqa: SIM905 - long word lists read best as words
)
# Browsers ignore ASCII whitespace and control characters in a URL's scheme ("java\tscript:").
_IGNORED_IN_URLS = re.compile(r"[\x00-\x20]+")
_SCRIPT_SCHEMES = ("javascript:", "vbscript:")
_SCRIPT_IN_STYLE = ("javascript:", "vbscript:", "expression(")

# HTML's named entities (&nbsp;) are not XML's; the HL7 validator accepts them, and so do we,
# read as the characters they name. The stored narrative stays as the client sent it.
_NAMED_ENTITY = re.compile(r"&([A-Za-z][A-Za-z0-9]*);")
_XML_ENTITIES = frozenset({"lt", "gt", "amp", "quot", "apos"})


def _numeric_entity(match: re.Match[str]) -> str:
    name = match.group(1)
    if name in _XML_ENTITIES or name not in name2codepoint:
        return match.group(0)
    return f"&#{name2codepoint[name]};"


_PARSERS = threading.local()  # an lxml parser must not be shared between threads


def _parser() -> etree.XMLParser:
    parser = getattr(_PARSERS, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
        )
        _PARSERS.parser = parser
    return parser


def narrative_problems(div: str) -> list[str]:
    """Why ``div`` breaks the R4 narrative rules; empty when it is fine."""
    xml = _NAMED_ENTITY.sub(_numeric_entity, div) if "&" in div else div
    try:
        root = etree.fromstring(xml.encode("utf-8"), _parser())
    except etree.XMLSyntaxError as exc:
        last = exc.error_log.last_error
        reason = last.message if last is not None else "a syntax error"
        return [f"txt-1: the narrative is not well-formed XHTML ({_short(reason)})"]
    if root.getroottree().docinfo.doctype:
        return ["txt-1: a DOCTYPE is not allowed in a narrative"]
    if root.tag != f"{{{XHTML_NS}}}div":
        return [f'txt-1: the narrative must be a <div xmlns="{XHTML_NS}">']
    problems: list[str] = []
    has_image = False
    for node in root.iter():
        if isinstance(node, etree._ProcessingInstruction):
            problems.append("txt-1: processing instructions are not allowed")
        elif isinstance(node.tag, str):
            has_image = has_image or node.tag == f"{{{XHTML_NS}}}img"
            problems.extend(_element_problems(node))
    text = "".join(root.itertext())
    if not text.strip() and not has_image:
        problems.append("txt-2: the narrative must have some non-whitespace content")
    return problems


def _element_problems(node: etree._Element) -> list[str]:
    namespace, _, name = node.tag.rpartition("}")
    if namespace != f"{{{XHTML_NS}":
        return [f"txt-1: <{_short(name)}> is not in the XHTML namespace"]
    if name not in _ELEMENTS:
        return [f"txt-1: <{_short(name)}> is not allowed in a narrative"]
    problems = []
    for key, value in node.attrib.items():
        attribute = _attribute_name(key)
        if attribute is None or not (
            attribute in _ATTRIBUTES or f"{name}.{attribute}" in _ELEMENT_ATTRIBUTES
        ):
            shown = _short(key.rpartition("}")[2])
            problems.append(f"txt-1: the attribute {shown!r} is not allowed on <{name}>")
        elif f"{name}.{attribute}" in _URL_ATTRIBUTES and _script_url(name, attribute, value):
            problems.append(f"txt-1: <{name} {attribute}> must not be a script or data URL")
        elif attribute == "style" and any(s in _squeezed(value) for s in _SCRIPT_IN_STYLE):
            problems.append(f"txt-1: the style of <{name}> must not hold a script")
    return problems


def _attribute_name(key: str) -> str | None:
    """``href``, or ``xml:lang`` for the XML namespace; None for any other namespace."""
    if not key.startswith("{"):
        return key
    namespace, _, local = key[1:].partition("}")
    return f"xml:{local}" if namespace == _XML_NS else None


def _squeezed(value: str) -> str:
    return _IGNORED_IN_URLS.sub("", value).lower()


def _script_url(element: str, attribute: str, value: str) -> bool:
    url = _squeezed(value)
    if url.startswith(_SCRIPT_SCHEMES):
        return True
    # Inline images are common in narratives; a data: link could carry a whole HTML page.
    return url.startswith("data:") and (element, attribute) != ("img", "src")


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
