"""The one way creaturekit writes HTML pages: every value escaped unless it is markup.

A page's values come from files a stranger may have edited (a run's ``config.toml``,
part names, file names, metrics), so none of them may become markup. :class:`Html` marks
text that is already markup; only this module makes it. :func:`markup` fills a
``str.format`` template and escapes every value that is not :class:`Html`;
:func:`href` percent-encodes a relative path, so it can neither leave its attribute nor
become another kind of link; :func:`page` wraps a body in the page shell with the CSS
shared by every page (discovery report, evaluation report, demo page).
"""

from __future__ import annotations

import html
import string
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em}
table{border-collapse:collapse}td,th{padding:4px 8px;border:1px solid #ccc;text-align:left}
.sw{display:inline-block;width:1em;height:1em;margin-right:.4em;vertical-align:middle}
.g{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0;width:150px}
.g img{width:128px;image-rendering:pixelated}figcaption{font-size:12px}
.note{background:#fff4d6;padding:8px 12px;border-left:4px solid #e0a000}"""


class Html(str):
    """Text that is already markup (made by this module from escaped values)."""

    __slots__ = ()


class _Escaping(string.Formatter):
    """``str.format`` that escapes every field that is not :class:`Html`.

    A value of the wrong type for its format (a tampered ``"x"`` where ``:.3f`` expects a
    number) is shown as it is, escaped, instead of failing the page.
    """

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, Html):
            return value
        try:
            shown = format(value, format_spec)
        except (TypeError, ValueError):
            shown = str(value)
        return html.escape(shown, quote=True)


_FORMATTER = _Escaping()


def text(value: object) -> Html:
    """``value`` as text in a page (``<``, ``&`` and quotes escaped)."""
    return value if isinstance(value, Html) else Html(html.escape(str(value), quote=True))


def markup(template: str, /, *args: Any, **values: Any) -> Html:
    """``template.format(...)`` with every value escaped unless it is :class:`Html`."""
    return Html(_FORMATTER.vformat(template, args, values))


def join(items: Iterable[object], separator: str = "") -> Html:
    """The items one after the other (plain strings escaped)."""
    return Html(html.escape(separator).join(text(item) for item in items))


def href(path: str | PurePath) -> Html:
    """A relative link target: percent-encoded (``:``, ``#``, quotes...) and escaped."""
    if PurePath(path).is_absolute():
        raise ValueError(f"a page links only relative paths, not {path}")
    return Html(html.escape(quote(PurePath(path).as_posix(), safe="/"), quote=True))


def link(path: str | PurePath, label: object) -> Html:
    """``<a href="path">label</a>``."""
    return markup('<a href="{}">{}</a>', href(path), label)


def image(path: str | PurePath, alt: object) -> Html:
    """``<img src="path" alt="alt">``."""
    return markup('<img src="{}" alt="{}">', href(path), alt)


def table_row(cells: Iterable[object], header: Iterable[object] = ()) -> Html:
    """A table row: ``header`` cells as ``<th>``, then ``cells`` as ``<td>``."""
    heads = join(markup("<th>{}</th>", h) for h in header)
    return markup("<tr>{}{}</tr>", heads, join(markup("<td>{}</td>", c) for c in cells))


def page(title: object, body: Html) -> str:
    """The whole page: doctype, title, the shared CSS and ``body``."""
    return markup(
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>{}</title>\n'
        "<style>{}</style>\n</head><body>\n{}\n</body></html>\n",
        title,
        Html(STYLE),
        body,
    )
