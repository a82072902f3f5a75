"""Render a report as one self-contained HTML page (figures inlined as base64 PNG) and as Markdown.

Layout, most important first: the verdicts on the paper's five claims (``claims``), the
headline figure, the other figures, the tables (each in a horizontally scrollable box), and
last every sentence finding, grouped by kind under collapsed ``<details>`` headings.
The HTML has no scripts and no external resources: it opens offline, in any browser,
from a file, an MLflow artifact view or an e-mail attachment.
"""

from __future__ import annotations

import base64
import html
import math

import pandas as pd

__all__ = ["FINDING_KINDS", "LARGE_TABLE_ROWS", "SECTIONS", "render_html", "render_markdown", "table_files"]

#: A table with more rows than this (the per-structure one: a row per test structure per trial,
#: ~25,000 rows and 10 MB of CSV at 18 trials) is written as gzip-compressed CSV only, without
#: JSON; smaller tables as CSV and JSON.
LARGE_TABLE_ROWS = 5000


def table_files(name: str, n_rows: int, large_rows: int = LARGE_TABLE_ROWS) -> list[str]:
    """The file names a report writes for table ``name`` of ``n_rows`` rows, under ``tables/``."""
    return [f"{name}.csv.gz"] if n_rows > large_rows else [f"{name}.csv", f"{name}.json"]

#: (title, figure name, [(table name, caption, sort column or None, max rows)], explanation)
SECTIONS = (
    ("Headline numbers", None, [("headline", "test errors per model × split (mean, 95 % CI over seeds), baseline "
                                             "and long-range yardstick", None, 80),
                                ("yardstick", "beyond-cutoff Coulomb of the reference charges per split replica",
                                 None, 60)],
     "Yardstick: the force MAE (meV/Å) of a model exact but for the Coulomb forces of the reference charges "
     "from beyond its cutoff, and the energy MAE (meV/atom) of one that replaces that energy by a constant."),
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
#: Finding kind → (heading, the claim it bears on or None), in the order shown.
FINDING_KINDS = {
    "long_range_helps": ("Where long-range helps", 1), "split_gap": ("Random vs biased splits", 2),
    "charge_collapse": ("Charge collapse", 4), "depth": ("Depth of short-range models", 5),
    "best_model": ("Best model per split", None), "no_better_than_baseline": ("Models no better than the baseline", None),
    "distance_slope": ("Error vs distance to the training set", None),
    "cluster_bias": ("Clusters with a systematic energy bias", None), "md_stability": ("MD stability", None),
}
HEADLINE_TEXT = ("Test force and energy MAE per model and split, mean ± 95 % CI over seeds (log scale); random "
                 "(in distribution) beside the biased splits. Black: the zero-force / reference-energy baseline. "
                 "Red dashed: the long-range yardstick — the Coulomb forces and energies of the reference charges "
                 "from beyond the cutoff (for energies, what one constant per element leaves of it); a model whose "
                 "error lies far above it cannot resolve long-range effects.")

STYLE = """body{font-family:system-ui,sans-serif;margin:1em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em;margin:.3em 0}h2{font-size:1.25em;margin:1.2em 0 .4em}h3{font-size:1.05em}
.meta{font-size:12px;color:#555;margin:.2em 0 .6em}
table{border-collapse:collapse;font-size:12px;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:right}th{background:#f0f0f0}img{max-width:100%;border:1px solid #eee}.sig{color:#b00;font-weight:600}
.ns{color:#666}.na{color:#999}li{margin:.4em 0}caption{text-align:left;font-style:italic;padding:2px}
.scroll{overflow-x:auto;max-width:100%}table.verdicts{font-size:13px;margin:.3em 0 .6em}
table.verdicts td,table.verdicts th{text-align:left;vertical-align:top}.v{padding:1px 8px;border-radius:3px;font-weight:600}
.supported{background:#cdebd0;color:#1b5e20}.contradicted{background:#f6cdcd;color:#8e1b1b}
.inconclusive{background:#ffe9a8;color:#6b5200}.reason{color:#555;font-size:11px}
details{margin:.3em 0}summary{cursor:pointer;font-weight:600}"""


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
    return (f"<div class='scroll'><table><caption>{html.escape(caption + note)}</caption><thead><tr>{head}</tr>"
            f"</thead><tbody>{body}</tbody></table></div>")


def _finding_class(significant) -> str:
    return {True: "sig", False: "ns", None: "na"}[significant]


def _p(value) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.2g}"


def _precondition_line(claims) -> str:
    pre = claims.precondition
    state = {True: "met", False: "NOT met — every verdict is inconclusive", None: "not checked"}[pre.met]
    if pre.met and not pre.accurate:
        state = (f"met, but above the {100 * pre.accurate_threshold:.0f} % accuracy bar — the verdicts are "
                 "provisional")
    return f"Precondition, the models learned: {state} ({pre.text})."


def _verdicts_html(claims) -> list[str]:
    rows = []
    for claim in claims.claims:
        effect = claim.effect
        shown = f"{effect.name}: {effect.text()}" if effect is not None else "–"
        test = f"{effect.test}, p = {_p(effect.p_value)}" if effect is not None else "–"
        rows.append(f"<tr><td>{claim.number}</td><td>{html.escape(claim.statement)}</td>"
                    f"<td><span class='v {claim.verdict}'>{claim.verdict}</span></td>"
                    f"<td>{html.escape(shown)}<br><span class='reason'>{html.escape(claim.reason)}</span></td>"
                    f"<td>{html.escape(test)}</td><td>{len(claim.run_ids)}</td></tr>")
    return ["<h2>Verdicts on the paper's five claims</h2>",
            f"<p class='meta'>{html.escape(_precondition_line(claims))} Rules: docs/analysis.md, “Claim verdicts”, "
            "fixed before the study ran; details in claims.json.</p>",
            "<div class='scroll'><table id='verdicts' class='verdicts'><thead><tr><th>#</th><th>claim</th>"
            "<th>verdict</th><th>effect (95 % CI) and why</th><th>test</th><th>runs</th></tr></thead><tbody>",
            *rows, "</tbody></table></div>"]


def _image(name: str, image: bytes) -> str:
    return f"<img alt='{html.escape(name)}' src='data:image/png;base64,{base64.b64encode(image).decode('ascii')}'>"


def _findings_by_kind(findings: list) -> list[tuple[str, str, list]]:
    """``(kind, heading, findings)`` in ``FINDING_KINDS`` order (unknown kinds last)."""
    kinds = list(FINDING_KINDS) + sorted({f.kind for f in findings} - set(FINDING_KINDS))
    groups = []
    for kind in kinds:
        members = [f for f in findings if f.kind == kind]
        if members:
            title, claim = FINDING_KINDS.get(kind, (kind.replace("_", " "), None))
            groups.append((kind, title + (f" (bears on claim {claim})" if claim else ""), members))
    return groups


def render_html(title: str, header: list[str], findings: list, tables: dict[str, pd.DataFrame],
                figures: dict[str, bytes | None], claims=None) -> str:
    """The report page; ``header``: lines about the source; ``findings``: ``Finding`` objects;
    ``claims``: a ``claims.ClaimSet`` (its verdict table comes first), or None."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
             "<p class='meta'>" + "<br>".join(html.escape(line) for line in header) + "</p>"]
    if claims is not None:
        parts += _verdicts_html(claims)
        evidence = tables.get("claim_evidence")
        if evidence is not None and len(evidence):
            shown = evidence.drop(columns=[c for c in ("run_ids", "metric") if c in evidence])
            parts.append("<details><summary>Evidence behind each verdict (every effect, CI, test)</summary>" +
                         _html_table(shown, "effects per claim; run ids in tables/claim_evidence.csv", None, 200) +
                         "</details>")
    if figures.get("headline") is not None:
        parts += ["<h2>Headline: test errors per scheme and split</h2>", f"<p>{html.escape(HEADLINE_TEXT)}</p>",
                  _image("headline", figures["headline"])]
    shown_figures = [(h, f, e) for h, f, _, e in SECTIONS if f and figures.get(f) is not None]
    if shown_figures:
        parts.append("<h2>Figures</h2>")
    for heading, figure, explanation in shown_figures:
        parts += [f"<h3>{html.escape(heading)}</h3><p>{html.escape(explanation)}</p>", _image(heading, figures[figure])]
    parts.append("<h2>Tables</h2>")
    for heading, _, table_specs, explanation in SECTIONS:
        present = [spec for spec in table_specs if spec[0] in tables and not tables[spec[0]].empty]
        if present:
            parts.append(f"<h3>{html.escape(heading)}</h3><p>{html.escape(explanation)}</p>")
            parts.extend(_html_table(tables[name], caption, sort, rows) for name, caption, sort, rows in present)
    parts.append("<h2>Details: every finding, grouped by kind</h2>")
    for _, heading, members in _findings_by_kind(findings):
        items = "".join(f"<li class='{_finding_class(f.significant)}'>{html.escape(f.text)}</li>" for f in members)
        parts.append(f"<details><summary>{html.escape(heading)}: {len(members)}</summary><ol>{items}</ol></details>")
    if not findings:
        parts.append("<p>No findings: too few trials to compare.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown_table(table: pd.DataFrame, max_rows: int) -> str:
    shown = table.head(max_rows)
    lines = ["| " + " | ".join(str(c) for c in shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(_format(v).replace("|", "/") for v in row) + " |"
              for row in shown.itertuples(index=False)]
    return "\n".join(lines)


def _verdicts_markdown(claims) -> list[str]:
    lines = ["## Verdicts on the paper's five claims", "", _precondition_line(claims), "",
             "| # | claim | verdict | effect (95 % CI) | test | p | runs |", "|---|---|---|---|---|---|---|"]
    for claim in claims.claims:
        effect = claim.effect
        shown = f"{effect.name}: {effect.text()}" if effect is not None else "–"
        cells = [str(claim.number), claim.statement, f"**{claim.verdict}**", f"{shown} — {claim.reason}",
                 effect.test if effect is not None else "–", _p(effect.p_value) if effect is not None else "–",
                 str(len(claim.run_ids))]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return [*lines, "", "Rules: docs/analysis.md, “Claim verdicts” (fixed before the study ran); every effect and "
                        "run id in `claims.json`.", ""]


def render_markdown(title: str, header: list[str], findings: list, tables: dict[str, pd.DataFrame],
                    figure_files: dict[str, str], claims=None, large_rows: int = LARGE_TABLE_ROWS) -> str:
    """Markdown: source, verdicts, headline figure, other figures, the summary table, links to
    every table's files (``table_files``), and the findings grouped by kind."""
    lines = [f"# {title}", "", *[f"- {line}" for line in header], ""]
    if claims is not None:
        lines += _verdicts_markdown(claims)
    if "headline" in figure_files:
        lines += ["## Headline", "", HEADLINE_TEXT, "", f"![headline]({figure_files['headline']})", ""]
    others = {name: path for name, path in figure_files.items() if name != "headline"}
    if others:
        lines += ["## Figures", ""] + [f"![{name}]({path})" for name, path in others.items()] + [""]
    if "summary" in tables and not tables["summary"].empty:
        columns = ["model", "layers", "split", "n_trials", "test/e_mae_mean", "test/f_mae_mean",
                   "test/f_mae_ci95", "baseline_f_mae_mean", "f_skill_mean"]
        lines += ["## Summary", "", _markdown_table(tables["summary"][columns], 60), ""]
    lines += ["## Tables", ""]
    for name, table in tables.items():
        lines.append("- " + " / ".join(f"`tables/{file}`" for file in table_files(name, len(table), large_rows)))
    lines += ["", "## Findings, grouped by kind", ""]
    marks = {True: "**significant**", False: "not significant", None: "not testable"}
    for _, heading, members in _findings_by_kind(findings):
        lines += [f"### {heading}", ""] + [f"{i}. {f.text} ({marks[f.significant]})"
                                           for i, f in enumerate(members, 1)] + [""]
    if not findings:
        lines.append("(none)")
    return "\n".join(lines) + "\n"
