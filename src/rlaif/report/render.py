"""A tiny document model that renders the same content as Markdown and as self-contained HTML.

The report stage adds headings, paragraphs, notes, tables, preformatted text and PNG figures to a
`Doc`; `markdown()` links the figures as files under plots/, `html()` embeds them as base64 data
URIs so report.html can be mailed or opened from anywhere.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; text-align: left; }
th { background: #f5f5f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; display: block; margin: .8em 0; }
.note { padding: .6em .9em; border-left: 4px solid #4c72b0; background: #eef3fb; margin: .8em 0; }
.warn { border-left-color: #c44e52; background: #fbeeee; }
.notrun { color: #888; font-style: italic; }
table.samples td { max-width: 260px; font-size: 0.88em; }
"""


@dataclass
class Doc:
    title: str
    blocks: list[tuple] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)

    def h2(self, text: str, anchor: str = "") -> None:
        self.blocks.append(("h2", text, anchor))

    def h3(self, text: str) -> None:
        self.blocks.append(("h3", text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def note(self, text: str, warn: bool = False) -> None:
        """A highlighted paragraph; `warn` marks a caveat the reader must not miss."""
        self.blocks.append(("note", text, warn))

    def not_run(self, what: str, why: str = "not run") -> None:
        self.blocks.append(("notrun", f"{what}: {why}."))

    def table(self, headers: list[str], rows: list[list], css_class: str = "") -> None:
        self.blocks.append(("table", headers, [[_cell(v) for v in row] for row in rows], css_class))

    def pre(self, text: str) -> None:
        self.blocks.append(("pre", text))

    def figure(self, name: str, png: bytes, alt: str) -> None:
        self.figures[name] = png
        self.blocks.append(("img", name, alt))

    # --- rendering ---
    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "h2":
                out += [f"## {block[1]}", ""]
            elif kind == "h3":
                out += [f"### {block[1]}", ""]
            elif kind in ("p", "notrun"):
                out += [f"*{block[1]}*" if kind == "notrun" else block[1], ""]
            elif kind == "note":
                out += [f"> {'**Warning:** ' if block[2] else ''}{block[1]}", ""]
            elif kind == "table":
                headers, rows = block[1], block[2]
                out.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
                out.append("|" + "---|" * len(headers))
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
                out.append("")
            elif kind == "pre":
                out += ["```", block[1].rstrip(), "```", ""]
            elif kind == "img":
                out += [f"![{block[2]}](plots/{block[1]}.png)", ""]
        return "\n".join(out)

    def html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "h2":
                anchor = f' id="{html.escape(block[2])}"' if block[2] else ""
                body.append(f"<h2{anchor}>{html.escape(block[1])}</h2>")
            elif kind == "h3":
                body.append(f"<h3>{html.escape(block[1])}</h3>")
            elif kind == "p":
                body.append(f"<p>{html.escape(block[1])}</p>")
            elif kind == "notrun":
                body.append(f'<p class="notrun">{html.escape(block[1])}</p>')
            elif kind == "note":
                cls = "note warn" if block[2] else "note"
                body.append(f'<div class="{cls}">{"<b>Warning:</b> " if block[2] else ""}{html.escape(block[1])}</div>')
            elif kind == "table":
                headers, rows, css = block[1], block[2], block[3]
                head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
                lines = ["<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in rows]
                body.append(
                    f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>'
                )
            elif kind == "pre":
                body.append(f"<pre>{html.escape(block[1])}</pre>")
            elif kind == "img":
                data = base64.b64encode(self.figures[block[1]]).decode("ascii")
                body.append(
                    f'<img src="data:image/png;base64,{data}" alt="{html.escape(block[2])}" data-figure="{html.escape(block[1])}">'
                )
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body)
            + "\n</body></html>\n"
        )


def fmt(value, digits: int = 3) -> str:
    """Numbers for tables: floats to `digits` decimals, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 10**-digits or value == 0 else f"{value:.2e}"
    return str(value)


def _cell(value) -> str:
    return fmt(value) if not isinstance(value, str) else value


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def _html_cell(text: str) -> str:
    numeric = text.replace(".", "", 1).replace("-", "", 1).replace("e", "", 1).isdigit()
    cls = ' class="num"' if numeric else ""
    return f"<td{cls}>{html.escape(text).replace(chr(10), '<br>')}</td>"
