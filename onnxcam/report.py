"""A self-contained HTML report of an evaluation: a metrics table, deletion/insertion curves as
inline SVG, and overlays per image x method x layer as inline PNGs (no files beside it, no scripts)."""
from __future__ import annotations

import base64
import html

import cv2
import numpy as np

from .postprocess import overlay

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _png(rgb: np.ndarray, size: int = 128) -> str:
    small = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def _svg(curves: dict[str, list[float]], title: str, w: int = 320, h: int = 200) -> str:
    pad = 30
    parts = [f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{w // 2}" y="14" text-anchor="middle" font-size="12">{html.escape(title)}</text>',
             f'<rect x="{pad}" y="20" width="{w - pad - 10}" height="{h - pad - 20}" fill="none" stroke="#999"/>']
    for k, (label, ys) in enumerate(curves.items()):
        n = len(ys) - 1 or 1
        pts = " ".join(f"{pad + (w - pad - 10) * i / n:.1f},{20 + (h - pad - 20) * (1 - y):.1f}"
                       for i, y in enumerate(ys))
        color = COLORS[k % len(COLORS)]
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        parts.append(f'<text x="{pad + 4}" y="{34 + 12 * k}" font-size="10" fill="{color}">{html.escape(label)}</text>')
    parts.append(f'<text x="{pad}" y="{h - 8}" font-size="10">0</text>'
                 f'<text x="{w - 20}" y="{h - 8}" font-size="10">1</text></svg>')
    return "".join(parts)


def render(evaluation: dict, results: dict, views: list[np.ndarray], labels=None) -> str:
    """HTML for an evaluate() dict, the Results it came from and the images' uint8 views."""
    rows, deletion, insertion = [], {}, {}
    for method, data in evaluation["methods"].items():
        for layer, r in data["layers"].items():
            label = f"{method} @ {layer}"
            point = f"{r['pointing_hit_rate'] * 100:.0f}% / {r['pointing_energy']:.2f}" if "pointing_hit_rate" in r else "–"
            road_cell = f"{r['road_morf']:.3f} / {r['road_lerf']:.3f}" if "road_morf" in r else "–"
            rows.append(f"<tr><td>{html.escape(method)}</td><td>{html.escape(layer)}</td>"
                        f"<td>{r['average_drop']:.1f}</td><td>{r['increase_in_confidence']:.1f}</td>"
                        f"<td>{r['deletion_auc']:.3f}</td><td>{r['insertion_auc']:.3f}</td>"
                        f"<td>{road_cell}</td><td>{point}</td></tr>")
            deletion[label] = list(np.mean(r["curves"]["deletion"], axis=0))
            insertion[label] = list(np.mean(r["curves"]["insertion"], axis=0))
    sanity = [f"<tr><td>{html.escape(m)}</td><td>{row['randomized_layers']}</td><td>{row['spearman']:.2f}</td>"
              f"<td>{row['ssim']:.2f}</td></tr>"
              for m, d in evaluation["methods"].items() for row in d.get("sanity", [])]
    sanity_html = ("<h2>Sanity check (cascading randomization)</h2><table><tr><th>method</th>"
                   "<th>top layers randomized</th><th>Spearman</th><th>SSIM</th></tr>" + "".join(sanity)
                   + "</table>") if sanity else ""
    grid = []
    for i, (path, view) in enumerate(zip(evaluation["images"], views)):
        cells = [f'<td><img src="{_png(view)}"><br>{html.escape(path.split("/")[-1])}</td>']
        for method, res in results.items():
            t = int(res.target[i])
            name = labels[t] if labels else str(t)
            for layer, maps in res.maps.items():
                cells.append(f'<td><img src="{_png(overlay(view, maps[i]))}"><br>{html.escape(method)}<br>'
                             f'<small>{html.escape(layer)} · {html.escape(name)}</small></td>')
        grid.append("<tr>" + "".join(cells) + "</tr>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>onnxcam evaluation</title>
<style>body{{font-family:sans-serif;margin:20px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:center;font-size:13px}}</style></head><body>
<h1>onnxcam evaluation</h1><p>model {html.escape(evaluation.get("model", ""))} · {len(views)} images ·
deletion/insertion with {evaluation["steps"]} steps, deletion baseline {html.escape(evaluation["baseline"])}</p>
<table><tr><th>method</th><th>layer</th><th>Average Drop % (lower is better)</th><th>Increase in Confidence %</th>
<th>Deletion AUC (lower)</th><th>Insertion AUC (higher)</th><th>ROAD MoRF (lower) / LeRF (higher)</th>
<th>pointing hit / energy</th></tr>{"".join(rows)}</table>
<h2>Mean curves</h2>{_svg(deletion, "deletion: class probability vs fraction removed")}
{_svg(insertion, "insertion: class probability vs fraction revealed")}{sanity_html}
<h2>Overlays</h2><table>{"".join(grid)}</table></body></html>"""
