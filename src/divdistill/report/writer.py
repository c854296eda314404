"""One table writer for the report's plain tables: Markdown, LaTeX and HTML from the same (head, rows),
and the one stylesheet every HTML page of the report uses.

    document("md", "Title", ["A paragraph."], [("Section", ["A", "B"], [["x", "1"]], 1)])

A section is (title, head, rows, left): the first ``left`` columns are text (left-aligned), the rest
numbers (right-aligned); a section titled None has no heading. LaTeX gets the title as its caption
and the paragraphs as footnotes (pass none to leave them out).
"""

from __future__ import annotations

import html

STYLE = ("body{font-family:system-ui,sans-serif;margin:1.5em;max-width:90em}"
         "table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{padding:.25em .7em}"
         "thead th{border-bottom:2px solid #333;text-align:left}tbody tr{border-bottom:1px solid #ddd}"
         "td.n{text-align:right;white-space:nowrap}td.rep{color:#666;font-style:italic}"
         "td a{color:inherit;text-decoration:none}td a:hover{text-decoration:underline}"
         "p.note{font-size:.9em;color:#333}")


def page(title: str, body: list[str]) -> str:
    """A self-contained HTML page with the report's stylesheet."""
    return "\n".join(["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
                      f"<title>{html.escape(title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
                      *body, "</body>", "</html>"]) + "\n"


def _tex(s: str) -> str:
    return (s.replace("%", r"\%").replace("−", "$-$").replace("Δ", r"$\Delta$").replace("α", r"$\alpha$")
            .replace("<", "$<$").replace("_", r"\_"))


def markdown(head: list[str], rows: list[list[str]], left: int) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * left + "---:|" * (len(head) - left),
            *("| " + " | ".join(r) + " |" for r in rows)]


def latex(head: list[str], rows: list[list[str]], left: int) -> list[str]:
    return [r"\begin{tabular}{" + "l" * left + "r" * (len(head) - left) + "}", r"\toprule",
            " & ".join(_tex(h) for h in head) + r" \\", r"\midrule",
            *(" & ".join(_tex(c) for c in r) + r" \\" for r in rows), r"\bottomrule", r"\end{tabular}"]


def html_table(head: list[str], rows: list[list[str]], left: int) -> list[str]:
    esc = html.escape
    return ["<table>", "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead>", "<tbody>",
            *("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r[:left])
              + "".join(f'<td class="n">{esc(c)}</td>' for c in r[left:]) + "</tr>" for r in rows),
            "</tbody>", "</table>"]


def document(ext: str, title: str, paragraphs: list[str], sections: list[tuple], caption: str | None = None) -> str:
    """The whole file in one format: "md", "tex" or "html"; ``caption``: LaTeX's own (raw) caption."""
    if ext == "md":
        out = [f"# {title}", "", *(x for p in paragraphs for x in (p, ""))]
        for sub, head, rows, left in sections:
            out += [*([f"## {sub}", ""] if sub else []), *markdown(head, rows, left), ""]
        return "\n".join(out)
    if ext == "tex":
        out = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{caption or _tex(title)}}}"]
        for sub, head, rows, left in sections:
            out += [*([rf"\par\textbf{{{_tex(sub)}}}\par"] if sub else []), *latex(head, rows, left)]
        return "\n".join(out + [r"\par\footnotesize " + _tex(p) for p in paragraphs] + [r"\end{table}"]) + "\n"
    if ext == "html":
        body = [f"<h1>{html.escape(title)}</h1>", *(f"<p>{html.escape(p)}</p>" for p in paragraphs)]
        for sub, head, rows, left in sections:
            body += [*([f"<h2>{html.escape(sub)}</h2>"] if sub else []), *html_table(head, rows, left)]
        return page(title, body)
    raise ValueError(f"unknown table format {ext!r} (md, tex, html)")
