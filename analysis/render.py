"""Render a report as one self-contained HTML page (figures inlined as base64 PNG) and as Markdown.

The HTML has no scripts and no external resources: it opens offline, in any browser,
from a file, an MLflow artifact view or an e-mail attachment.
"""

from __future__ import annotations

import base64
import html
import math

import pandas as pd

__all__ = ["SECTIONS", "render_html", "render_markdown"]

#: (title, figure name, [(table name, caption, sort column or None, max rows)], explanation)
SECTIONS = (
    ("Summary per backbone × long-range × split", "summary", [("summary", "mean ± 95 % CI over replicates", None, 80)],
     "Test errors (meV/atom, meV/Å, me) with the dummy baseline (per-element reference energies, zero forces) "
     "fitted on the same training set; skill = 1 − model MAE / baseline MAE."),
    ("Random vs biased splits", None, [("split_gap", "test force MAE, biased split vs random", None, 80)],
     "How much each biased split degrades each model (ratio > 1: worse than random)."),
    ("Parity per split", "parity", [], "Predicted vs reference energy per atom of every test structure."),
    ("Error vs distance to the training set", "distance",
     [("distance_slopes", "fitted slope per model (the transferability number)", None, 40),
      ("distance_curves", "binned means with bootstrap 95 % CIs", None, 80)],
     "Distance = the test parent's nearest-train distance in the split's joint geometry–composition metric."),
    ("Per-cluster, element, metal and size errors", "clusters",
     [("by_cluster", "per cluster (biased = significant after BH correction)", "abs_bias", 40),
      ("by_element", "per element", "abs_bias", 40), ("by_metal", "per metal", "abs_bias", 40),
      ("by_size", "per size", None, 40)],
     "Bias = mean signed energy error per atom (meV/atom) of a bucket's structures."),
    ("Charges", "charges", [("charge_summary", "collapse detector per trial and head", None, 60),
                            ("charge_by_element", "mean charges per element", None, 60)],
     "Collapsed = predicted-charge spread below 0.1 × the reference spread (or below 0.01 e without references)."),
    ("Depth study (short-range models)", "depth", [("depth", "train/test force MAE and gap per depth", None, 60),
                                                    ("depth_slopes", "slope per extra layer", None, 40)],
     "Gap = test − train force MAE (meV/Å)."),
    ("Where long-range helps", "long_range", [("long_range_paired", "paired per-structure differences", None, 60),
                                              ("long_range_by_cluster", "per cluster", None, 60)],
     "Difference = long-range − short-range twin error on the same structure; negative = long-range helps."),
    ("MD stability probe", "md_probe", [("md_probe_summary", "per scheme", None, 60),
                                        ("md_probe", "short NVE trajectories on held-out MOFs", None, 60)],
     "Energy drift of the total energy (meV/atom/ps) and whether every bond of the start survived."),
)

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;font-size:12px;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:right}th{background:#f0f0f0}img{max-width:100%;border:1px solid #eee}.sig{color:#b00;font-weight:600}
.ns{color:#666}.na{color:#999}li{margin:.4em 0}caption{text-align:left;font-style:italic;padding:2px}"""


def _format(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4g}"
    return str(value)


def _rows(table: pd.DataFrame, sort: str | None, max_rows: int) -> pd.DataFrame:
    if sort == "abs_bias" and "bias_mev" in table:
        table = table.reindex(table["bias_mev"].abs().sort_values(ascending=False).index)
    return table.head(max_rows)


def _html_table(table: pd.DataFrame, caption: str, sort: str | None, max_rows: int) -> str:
    shown = _rows(table, sort, max_rows)
    note = f" (first {max_rows} of {len(table)} rows; all in the CSV)" if len(table) > max_rows else ""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_format(v))}</td>" for v in row) + "</tr>"
                   for row in shown.itertuples(index=False))
    return (f"<table><caption>{html.escape(caption + note)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _finding_class(significant) -> str:
    return {True: "sig", False: "ns", None: "na"}[significant]


def render_html(title: str, header: list[str], findings: list, tables: dict[str, pd.DataFrame],
                figures: dict[str, bytes | None]) -> str:
    """The report page; ``header``: lines about the source; ``findings``: ``Finding`` objects."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts.append("<p>" + "<br>".join(html.escape(line) for line in header) + "</p>")
    parts.append("<h2>Findings</h2><ol>")
    for finding in findings:
        parts.append(f"<li class='{_finding_class(finding.significant)}'>{html.escape(finding.text)}</li>")
    parts.append("</ol>" if findings else "</ol><p>No findings: too few trials to compare.</p>")
    for heading, figure, table_specs, explanation in SECTIONS:
        present = [spec for spec in table_specs if spec[0] in tables and not tables[spec[0]].empty]
        image = figures.get(figure) if figure else None
        if not present and image is None:
            continue
        parts.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(explanation)}</p>")
        if image is not None:
            encoded = base64.b64encode(image).decode("ascii")
            parts.append(f"<img alt='{html.escape(heading)}' src='data:image/png;base64,{encoded}'>")
        parts.extend(_html_table(tables[name], caption, sort, rows) for name, caption, sort, rows in present)
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown_table(table: pd.DataFrame, max_rows: int) -> str:
    shown = table.head(max_rows)
    lines = ["| " + " | ".join(str(c) for c in shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(_format(v).replace("|", "/") for v in row) + " |"
              for row in shown.itertuples(index=False)]
    return "\n".join(lines)


def render_markdown(title: str, header: list[str], findings: list, tables: dict[str, pd.DataFrame],
                    figure_files: dict[str, str]) -> str:
    """A short Markdown summary: source, findings, the summary table, links to figures and tables."""
    lines = [f"# {title}", "", *[f"- {line}" for line in header], "", "## Findings", ""]
    marks = {True: "**significant**", False: "not significant", None: "not testable"}
    lines += [f"{i}. {f.text} ({marks[f.significant]})" for i, f in enumerate(findings, 1)] or ["(none)"]
    if "summary" in tables and not tables["summary"].empty:
        columns = ["model", "layers", "split", "n_trials", "test/e_mae_mean", "test/f_mae_mean",
                   "test/f_mae_ci95", "baseline_f_mae_mean", "f_skill_mean"]
        lines += ["", "## Summary", "", _markdown_table(tables["summary"][columns], 60)]
    if figure_files:
        lines += ["", "## Figures", ""] + [f"![{name}]({path})" for name, path in figure_files.items()]
    lines += ["", "## Tables", ""] + [f"- `tables/{name}.csv` / `tables/{name}.json`" for name in tables]
    return "\n".join(lines) + "\n"
