"""Sphinx extension: ``.. lenetish-api-index::``, a table of every public name of lenetish.

The directive's content lists API pages (``api/models``...). For each page it writes a heading
(the page's title, linked) and a table of the names of ``lenetish.__all__`` that the page
documents, each linked to its entry, with the first line of its docstring (for a ``py:data``
entry, the first sentence of its description). A public name that no listed page documents is
a warning, so ``sphinx-build -W`` fails until it has an entry.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

LOGGER = logging.getLogger(__name__)
AUTODOC = re.compile(r"^\.\. auto(?:class|function|exception|data):: (lenetish\.\w+)$")
DATA = re.compile(r"^\.\. py:data:: (\w+)$")
MODULE = re.compile(r"^\.\. (?:py:module|py:currentmodule|automodule):: (\S+)$")


def _data_summary(lines: list[str], start: int) -> str:
    """The first sentence of the ``py:data`` entry that starts at ``lines[start]``."""
    text: list[str] = []
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            break
        stripped = line.strip()
        if stripped.startswith(":"):
            continue
        if not stripped and text:
            break
        text.append(stripped)
    sentence = " ".join(text)
    return sentence.split(". ")[0].rstrip(".") + "."


def _summary(obj: Any) -> str:
    """The first line of an object's own docstring."""
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def page_entries(text: str, public: set[str]) -> list[tuple[str, str, str]]:
    """(public name, link target, summary) of each public name a page documents, in order."""
    import lenetish

    lines = text.splitlines()
    module = "lenetish"
    found = []
    for index, line in enumerate(lines):
        if match := MODULE.match(line):
            module = match[1]
        elif (match := AUTODOC.match(line)) and match[1].split(".")[1] in public:
            name = match[1].split(".")[1]
            found.append((name, match[1], _summary(getattr(lenetish, name))))
        elif (match := DATA.match(line)) and match[1] in public:
            owner = module
            for option in lines[index + 1 :]:
                if not option.strip().startswith(":"):
                    break
                if option.strip().startswith(":module:"):
                    owner = option.split(":module:")[1].strip()
            found.append((match[1], f"{owner}.{match[1]}", _data_summary(lines, index)))
    return found


class ApiIndex(SphinxDirective):
    """The ``lenetish-api-index`` directive."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        """Build the headings and tables from the pages named in the content."""
        import lenetish

        public = set(lenetish.__all__)
        seen: set[str] = set()
        source = Path(self.env.srcdir)
        # The summaries' own references (``:func:`make_loaders```) resolve against lenetish.
        rst: list[str] = [".. py:currentmodule:: lenetish", ""]
        for page in (line.strip() for line in self.content if line.strip()):
            path = source / f"{page}.rst"
            self.env.note_dependency(str(path))
            text = path.read_text()
            entries = page_entries(text, public)
            if not entries:
                continue
            title = next(line for line in text.splitlines() if line and line[0] not in ". ")
            rst += [f":doc:`{title} </{page}>`", "-" * 80, ""]
            rst += [".. list-table::", "   :widths: 30 70", "   :class: api-index", ""]
            for name, target, summary in entries:
                seen.add(name)
                rst += [f"   * - :py:obj:`{name} <{target}>`", f"     - {summary or ' '}"]
            rst.append("")
        for name in sorted(public - seen - {"__version__"}):
            LOGGER.warning("lenetish.%s is public but no API page documents it", name)
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(rst, source="api-index"), node)
        return list(node.children)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directive."""
    app.add_directive("lenetish-api-index", ApiIndex)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
