"""Tables as Markdown, LaTeX (booktabs) or tidy CSV."""
from __future__ import annotations

import csv
import io

from .aggregate import Cell
from .tables import Table

FORMATS = ("md", "latex", "csv")
DAGGER = "†"  # a sanity check of the suite failed
DOUBLE_DAGGER = "‡"  # the attack's own library raised a flag (AutoAttack's checks)


def render(tables: list[Table], fmt: str) -> str:
    if fmt == "csv":
        return to_csv(tables)
    one = to_markdown if fmt == "md" else to_latex
    return "\n".join(one(t) for t in tables)


def cell_text(cell: Cell | None, pm: str = " ± ") -> tuple[str, bool, bool]:
    """(number text, bold, failed) for one cell; '–' where nothing was evaluated."""
    if cell is None:
        return "–", False, False
    text = f"{100 * cell.mean:.1f}"
    if cell.std is not None:
        text += f"{pm}{100 * cell.std:.1f}"
    return text, cell.best, bool(cell.failed)


# --- Markdown -------------------------------------------------------------------------------
def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _flagged(cell: Cell | None) -> bool:
    return bool(cell is not None and cell.flags)


def _md_cell(cell: Cell | None) -> str:
    text, bold, failed = cell_text(cell)
    return (f"**{text}**" if bold else text) + (DAGGER if failed else "") + (DOUBLE_DAGGER if _flagged(cell) else "")


def _md_row(items) -> str:
    return "| " + " | ".join(items) + " |"


def to_markdown(table: Table) -> str:
    top, sub, prev = ["Method"], [""], None
    for col in table.columns:
        top.append(_md_escape(col.group or col.label) if col.group != prev or not col.group else "")
        sub.append(_md_escape(col.label) if col.group else "")
        prev = col.group
    lines = [f"**{_md_escape(table.title)}**", "", _md_row(top),
             _md_row([":--"] + ["--:"] * len(table.columns))]
    if any(col.group for col in table.columns):
        lines.append(_md_row(sub))
    for m in table.methods:
        lines.append(_md_row([_md_escape(m)] + [_md_cell(table.cell(m, c)) for c in table.columns]))
    lines.append("")
    lines += [f"{note}  " for note in table.notes]
    return "\n".join(lines) + "\n"


# --- LaTeX ----------------------------------------------------------------------------------
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_UNICODE = {"L∞": r"L$_\infty$", "L₂": r"L$_2$", "ε": r"$\epsilon$", "σ": r"$\sigma$", "±": r"$\pm$",
                  DAGGER: r"$^\dagger$", DOUBLE_DAGGER: r"$^\ddagger$", "–": "--"}


def latex_text(text: str) -> str:
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    for uni, tex in _LATEX_UNICODE.items():
        out = out.replace(uni, tex)
    return out


def _latex_cell(cell: Cell | None) -> str:
    text, bold, failed = cell_text(cell, pm=r" $\pm$ ")
    text = text.replace("–", "--")
    return (rf"\textbf{{{text}}}" if bold else text) + (r"$^\dagger$" if failed else "") \
        + (r"$^\ddagger$" if _flagged(cell) else "")


def _latex_header(table: Table) -> list[str]:
    top, rules, col = [""], [], 2
    for group, span in table.groups():
        if group:
            top.append(rf"\multicolumn{{{span}}}{{c}}{{{latex_text(group)}}}")
            rules.append(rf"\cmidrule(lr){{{col}-{col + span - 1}}}")
        else:
            top += [""] * span
        col += span
    sub = ["Method"] + [latex_text(c.label) for c in table.columns]
    lines = [" & ".join(top) + r" \\", " ".join(rules)] if rules else []
    return lines + [" & ".join(sub) + r" \\"]


def to_latex(table: Table) -> str:
    """A `table` float with a booktabs `tabular`; needs \\usepackage{booktabs}."""
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_text(table.title)}}}",
             r"\begin{tabular}{l" + "r" * len(table.columns) + "}", r"\toprule"]
    lines += _latex_header(table)
    lines.append(r"\midrule")
    for m in table.methods:
        cells = [latex_text(m)] + [_latex_cell(table.cell(m, c)) for c in table.columns]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\par\smallskip",
              r"{\footnotesize " + r" \\ ".join(latex_text(n) for n in table.notes) + r"\par}",
              r"\end{table}"]
    return "\n".join(lines) + "\n"


# --- CSV ------------------------------------------------------------------------------------
CSV_FIELDS = ("dataset", "method", "group", "column", "perturbation", "threat", "severity",
              "mean", "std", "n_seeds", "best", "sanity_failed", "attack_flags")


def to_csv(tables: list[Table]) -> str:
    """Tidy: one line per (table, method, column); accuracies as fractions, like the records."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for t in tables:
        for m in t.methods:
            for col in t.columns:
                cell = t.cell(m, col)
                if cell is None:
                    continue
                pert, threat, sev = col.key
                writer.writerow({
                    "dataset": t.dataset, "method": m, "group": col.group, "column": col.label,
                    "perturbation": pert, "threat": threat, "severity": "" if pert == "clean" else sev,
                    "mean": f"{cell.mean:.6g}", "std": "" if cell.std is None else f"{cell.std:.6g}",
                    "n_seeds": len(cell.values), "best": int(cell.best),
                    "sanity_failed": ";".join(sorted(cell.failed)),
                    "attack_flags": ";".join(sorted(cell.flags))})
    return buf.getvalue()
