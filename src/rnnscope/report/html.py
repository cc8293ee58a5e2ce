"""The report of a run: one HTML page that a person opens first (``report.html``).

The page is built only from what is already in the run directory — config, history, metrics,
``analysis/*.json`` and ``figures/*`` — so it can be rebuilt at any time without recomputing anything.
Images are linked by relative path, so the page works wherever the run directory is moved.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any

from rnnscope.core.io import atomic_path, read_json
from rnnscope.report.sections import SECTIONS, Section

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f3b57;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;opacity:.85;font-size:14px}
nav{padding:8px 32px;background:#e8edf2;font-size:13px} nav a{margin-right:14px;color:#1f3b57}
main{padding:8px 32px 40px;max-width:1400px}
section{background:#fff;border:1px solid #e2e2e2;border-radius:6px;margin:18px 0;padding:12px 20px}
h2{font-size:18px;margin:6px 0 4px;color:#1f3b57} p.blurb{color:#555;font-size:13px;margin:2px 0 10px}
.figs{display:flex;flex-wrap:wrap;gap:14px} figure{margin:0;max-width:100%}
figure img{max-width:100%;max-height:520px;border:1px solid #eee}
figcaption{font-size:12px;color:#666;text-align:center}
table{border-collapse:collapse;font-size:13px;margin:6px 0 10px} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f2f4f7} td.num{text-align:right;font-variant-numeric:tabular-nums}
.flag{color:#b3261e;font-weight:600} .ok{color:#2e7d32}
details{font-size:13px} pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:12px}
iframe{border:1px solid #eee;width:100%;height:560px}
"""


def build_run_report(run_path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write ``report.html`` in the run directory from its contents and return its path."""
    root = Path(run_path)
    config = _read_optional(root / "config.json")
    metrics = _read_optional(root / "metrics.json")
    name = title or (config or {}).get("name", root.name)
    body = [_header(name, config), _nav()]
    body.append("<main>")
    body.append(_overview(config, metrics))
    figures = _list_figures(root / "figures")
    analyses = _list_analyses(root / "analysis")
    used: set[Path] = set()
    metrics_section = "behaviour" if (config or {}).get("system") == "ibl" else "emissions"
    for section in SECTIONS:
        block = _section(section, figures, analyses, metrics if section.key == metrics_section else None, used, root)
        if block:
            body.append(block)
    body.append("</main>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(str(name))} — rnnscope</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>"
    )
    target = root / "report.html"
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return target


def _read_optional(path: Path) -> Any:
    return read_json(path) if path.is_file() else None


def _header(name: str, config: dict | None) -> str:
    description = html.escape((config or {}).get("description", ""))
    return f"<header><h1>{html.escape(str(name))}</h1><p>{description}</p></header>"


def _nav() -> str:
    links = "".join(f"<a href='#{s.key}'>{html.escape(s.title)}</a>" for s in SECTIONS if s.key != "other")
    return f"<nav>{links}</nav>"


def _overview(config: dict | None, metrics: dict | None) -> str:
    rows = []
    if config:
        for key in ("system", "seed"):
            if key in config:
                rows.append((key, config[key]))
        for group in ("task", "model", "data", "training"):
            for key, value in (config.get(group) or {}).items():
                if isinstance(value, (dict, list)) and len(json.dumps(value)) > 80:
                    continue
                rows.append((f"{group}.{key}", value))
    table = _table(rows, header=("setting", "value")) if rows else ""
    details = (
        f"<details><summary>full configuration</summary><pre>{html.escape(json.dumps(config, indent=2))}</pre></details>"
        if config
        else ""
    )
    return f"<section id='overview'><h2>Run</h2>{table}{details}</section>"


def _section(section: Section, figures: list[Path], analyses: dict[str, dict], metrics: dict | None,
             used: set[Path], root: Path) -> str:
    mine = [f for f in figures if f not in used and _belongs(f, section)]
    used.update(mine)
    tables = []
    if metrics:
        tables.append(_metrics_table(metrics))
    for stem, data in analyses.items():
        if any(stem.startswith(prefix) for prefix in section.prefixes if prefix):
            tables.append(f"<h3>{html.escape(stem)}</h3>" + _scalars_table(data))
    if not mine and not tables:
        return ""
    images = []
    for fig in mine:
        rel = fig.relative_to(root).as_posix()
        caption = html.escape(fig.stem.replace("_", " "))
        if fig.suffix == ".html":
            images.append(f"<figure style='flex:1 1 100%'><iframe src='{rel}'></iframe><figcaption>{caption} (interactive)</figcaption></figure>")
        else:
            images.append(f"<figure><img src='{rel}' alt='{caption}'><figcaption>{caption}</figcaption></figure>")
    blurb = f"<p class='blurb'>{html.escape(section.blurb)}</p>" if section.blurb else ""
    return (
        f"<section id='{section.key}'><h2>{html.escape(section.title)}</h2>{blurb}"
        + "".join(tables)
        + f"<div class='figs'>{''.join(images)}</div></section>"
    )


def _belongs(figure: Path, section: Section) -> bool:
    return any(figure.stem.startswith(prefix) for prefix in section.prefixes)


def _list_figures(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    pngs = sorted(folder.glob("*.png"))
    pages = sorted(folder.glob("*.html"))
    return pngs + pages


def _list_analyses(folder: Path) -> dict[str, dict]:
    if not folder.is_dir():
        return {}
    return {path.stem: read_json(path) for path in sorted(folder.glob("*.json"))}


def _metrics_table(metrics: dict) -> str:
    rows = []
    for key, value in sorted(metrics.items()):
        if isinstance(value, (int, float)) or (isinstance(value, list) and len(value) <= 6 and all(isinstance(v, (int, float)) for v in value)):
            rows.append((key, value))
    flags = metrics.get("flags") or {}
    table = _table(rows, header=("metric", "value"))
    if flags:
        flag_rows = [(k, "<span class='flag'>outside noise floor</span>" if v else "<span class='ok'>at noise floor</span>")
                     for k, v in sorted(flags.items())]
        table += _table(flag_rows, header=("metric", "verdict"), raw=True)
    return table


def _scalars_table(data: dict) -> str:
    rows = []
    for key, value in sorted(data.items()):
        if key.startswith("__"):
            continue
        if isinstance(value, bool) or isinstance(value, (int, float, str)):
            rows.append((key, value))
        elif isinstance(value, dict) and "__ndarray__" in value and len(value["__ndarray__"]) <= 6 and not any(isinstance(x, list) for x in value["__ndarray__"]):
            rows.append((key, value["__ndarray__"]))
    return _table(rows, header=("quantity", "value")) if rows else ""


def _table(rows, *, header: tuple[str, str], raw: bool = False) -> str:
    cells = []
    for key, value in rows:
        shown = value if raw else html.escape(_format(value))
        cls = " class='num'" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
        cells.append(f"<tr><td>{html.escape(str(key))}</td><td{cls}>{shown}</td></tr>")
    return f"<table><tr><th>{header[0]}</th><th>{header[1]}</th></tr>{''.join(cells)}</table>"


def _format(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return str(value)
