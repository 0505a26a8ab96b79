"""The report's HTML: one self-contained page (inline CSS, figures as base64 PNG data URIs, no
script, nothing fetched), built from a `ReportData` and the figures of
`plots`.  Every text that comes from the run is HTML-escaped."""

from __future__ import annotations

import base64
import math
from html import escape
from typing import Any

from contrastive.evaluation.report import plots
from contrastive.evaluation.report.collect import ReportData

#: (id, heading) of the page's sections, in order.
SECTIONS = (
    ("curves", "Training curves"),
    ("online-knn", "Online evaluation"),
    ("evaluation", "Final evaluation"),
    ("map", "Test embeddings in 2-D"),
    ("neighbours", "Nearest neighbours"),
    ("views", "Augmentation preview"),
)

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1b1b;
       max-width: 1120px; margin: 0 auto; padding: 1.5em; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
nav { margin-top: 1em; } nav a { margin-right: 1em; } img { max-width: 100%; height: auto; display: block; margin: 0.8em 0; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 0.3em 0.9em; border-bottom: 1px solid #e4e4e4; text-align: right; }
th:first-child, td:first-child { text-align: left; } caption { text-align: left; margin-bottom: 0.4em; }
.summary td { text-align: left; } .note { color: #6a5200; background: #fff8e1; padding: 0.5em 0.8em;
       border-left: 4px solid #f0c000; } .muted { color: #666; font-size: 0.9em; } code { font-size: 0.95em; }
"""


def image(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{escape(alt)}">'


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return escape(str(value)) if value is not None else "–"
    if isinstance(value, float) and not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def summary(report: ReportData) -> str:
    """What ran: method, parts, data, steps, speed, from ``config.yaml`` and ``results.json``."""
    config, results = report.config or {}, report.results or {}

    def name(key: str) -> str | None:
        value = config.get(key)
        return value.get("name") if isinstance(value, dict) else None

    trainer = config.get("trainer") or {}
    rows = [
        ("method", name("method") or results.get("method")), ("backbone", name("backbone")), ("data", name("data")),
        ("steps / epochs", f"{results['steps']} / {results['epochs']}" if "steps" in results else None),
        ("global batch", results.get("global_batch_size") or trainer.get("batch_size")),
        ("final loss", _number(results.get("loss")) if "loss" in results else None),
        ("views per second", f"{results['views_per_second']:.0f}" if results.get("views_per_second") else None),
        ("training time", f"{results['wall_time_s']:.0f} s" if results.get("wall_time_s") else None),
        ("device", results.get("device")), ("seed", config.get("seed")),
        ("contrastive", (results.get("versions") or config.get("versions") or {}).get("contrastive")),
    ]
    cells = "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in rows if v is not None)
    body = f'<table class="summary">{cells}</table>' if cells else ""
    if not results:
        body += note("results.json is not written yet: the run is still training or stopped before its end")
    return body


def curves(report: ReportData) -> str:
    panels = plots.training_panels(report.training)
    if not panels:
        return note("metrics.jsonl holds no training records yet (one is written every trainer.log_every steps)")
    names = ", ".join(k for _, keys in panels for k in keys)
    return image(plots.curves_png(report.training, panels), f"training curves over steps: {names}") + \
        f'<p class="muted">From metrics.jsonl, one record every trainer.log_every steps: {escape(names)}.</p>'


def online(report: ReportData) -> str:
    records = report.evaluation_records
    panels = plots.panels_for(records, plots.EVALUATION_PANELS)
    if not panels:
        return note("no online evaluation records: the online kNN runs with eval.monitor_every N "
                    "(e.g. --eval.monitor_every 5) on labelled data")
    final = (report.results or {}).get("eval") or {}
    finals: dict[str, dict[str, float]] = {}
    for _, keys in panels:
        lines = {}
        if isinstance(final.get(keys[0]), (int, float)):
            lines["learned (final)"] = final[keys[0]]
        for baseline, (label, _) in plots.BASELINE_STYLES.items():
            value = (final.get("baselines") or {}).get(baseline, {}).get(keys[0])
            if isinstance(value, (int, float)):
                lines[label] = value
        finals[keys[0]] = lines
    text = ('<p class="muted">Measured at epoch ends on the eval data (capped by eval.monitor_max_samples); '
            "horizontal lines: the final evaluation of the learned backbone and of the baselines.</p>")
    names = ", ".join(k for _, keys in panels for k in keys)
    return image(plots.curves_png(records, panels, axis="epoch", finals=finals), f"online evaluation over epochs: {names}") + text


def evaluation_table(report: ReportData) -> str:
    from contrastive.evaluation.scoring import BASELINE_LABELS, format_table, score_columns

    if report.results is None:
        return note("no results.json yet: the final evaluation is written when fit ends")
    results = report.results.get("eval")
    if not results:
        return note(f"the run had no final evaluation (eval.protocols []); score it with: contrastive eval {report.run}")
    columns = score_columns(results)
    rows = [("learned", results)] + [(BASELINE_LABELS.get(k, k), v) for k, v in (results.get("baselines") or {}).items()]
    best = {}
    for key, _ in columns:
        values = [row.get(key) for _, row in rows if isinstance(row.get(key), (int, float))]
        if values and ("top" in key):
            best[key] = max(values)
    head = "".join(f"<th>{escape(title)}</th>" for _, title in columns)
    body = ""
    for label, row in rows:
        cells = ""
        for key, _ in columns:
            text = _number(row.get(key))
            cells += f"<td><b>{text}</b></td>" if key in best and row.get(key) == best[key] else f"<td>{text}</td>"
        body += f"<tr><td>{escape(label)}</td>{cells}</tr>"
    caption = format_table(results).splitlines()[0]
    out = f"<table><caption>{escape(caption)}</caption><tr><th></th>{head}</tr>{body}</table>"
    if results.get("skipped"):
        out += note(f"kNN and linear probe skipped: {results['skipped']['reason']}; label-free metrics instead "
                    "(alignment and uniformity: lower is better; effective rank: how many dimensions are used)")
    bold = "Best accuracy per column in bold. " if best else ""
    return out + f'<p class="muted">{bold}Again: <code>contrastive eval {escape(str(report.run))}</code></p>'


def embedding_map(report: ReportData) -> str:
    out = note(report.notes["map"]) if "map" in report.notes else ""
    if report.map_coords is None:
        return out
    n = len(report.map_coords)
    sampled = f"a seeded sample of {n} of the {report.map_total}" if n < report.map_total else f"all {n}"
    title = f"{report.map_method} of the frozen features of {sampled} test images"
    return image(plots.map_png(report.map_coords, report.map_labels, report.classes, title), title) + out + \
        f'<p class="muted">{escape(title)}, L2-normalised, coloured by label; seeded with the recipe\'s seed.</p>'


def neighbours(report: ReportData) -> str:
    out = note(report.notes["neighbours"]) if "neighbours" in report.notes else ""
    found = report.neighbours
    if found is None:
        return out
    marks = " Green border: same label as the query; red: another label." if found.labelled else ""
    text = (f"Each row: a test image, then its {len(found.images[0]) if found.images else 0} nearest training "
            f"images by cosine of the frozen features (among {found.gallery_size}), with label and cosine.{marks}")
    return image(plots.neighbours_png(found, report.classes), "test images and their nearest training images") + out + \
        f'<p class="muted">{escape(text)}</p>'


def views(report: ReportData) -> str:
    out = note(report.notes["views"]) if "views" in report.notes else ""
    if not report.views:
        return out
    text = "One training image and views of it drawn by the run's own view pipeline(s), seeded with the recipe's seed."
    return image(plots.views_png(report.views), "augmentation preview") + out + f'<p class="muted">{escape(text)}</p>'


def render(report: ReportData) -> str:
    """The whole page."""
    parts = {"curves": curves, "online-knn": online, "evaluation": evaluation_table, "map": embedding_map,
             "neighbours": neighbours, "views": views}
    links = "".join(f'<a href="#{key}">{escape(title)}</a>' for key, title in SECTIONS)
    sections = "".join(f'<section id="{key}"><h2>{escape(title)}</h2>{parts[key](report)}</section>'
                       for key, title in SECTIONS)
    name = escape(str(report.run))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>contrastive report: {name}</title>'
            f"<style>{STYLE}</style></head><body><header><h1>What {name} learned</h1>{summary(report)}</header>"
            f"<nav>{links}</nav>{sections}</body></html>\n")
