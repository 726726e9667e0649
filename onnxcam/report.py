"""A self-contained HTML report of an evaluation: a metrics table, deletion/insertion curves as
inline SVG, and overlays per image x method x layer as inline PNGs (no files beside it, no scripts)."""
from __future__ import annotations

import base64
import html

import cv2
import numpy as np

from .methods import get
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
                cells.append(f'<td><img src="{_png(overlay(view, maps[i], diverging=get(method).signed))}"><br>{html.escape(method)}<br>'
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


def fmt(value, spec: str = ".3f") -> str:
    """A figure for people; "–" where there is none (JSON null: not computed, or not finite)."""
    return "–" if value is None else format(value, spec)


def _difference(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """cand - ref in [-1, 1] as [0, 1] around 0.5 for the diverging colormap (red: the candidate
    looks there more, blue: less)."""
    return np.clip(0.5 + 0.5 * (cand - ref), 0, 1)


def render_comparison(result: dict, ref_res, cand_res, views: list[np.ndarray], labels=None) -> str:
    """HTML for a compare() dict: verdict, per-layer summary, layer matching, and per image (worst
    first) the reference and candidate overlays side by side with their difference."""
    name = (lambda t: labels[t] if labels else str(t))
    signed = get(result["method"]).signed
    index = {path: i for i, path in enumerate(str(p) for p in result.get("image_order", []))}
    pairs = [(m["reference"], m["candidate"]) for m in result["matching"]]
    layer_rows = []
    for (r, c), m in zip(pairs, result["matching"]):
        s = result["summary"]["layers"][r]
        act = fmt(s["activation_pearson"])
        layer_rows.append(f"<tr><td>{html.escape(r)}</td><td>{html.escape(c)}</td><td>{m['how']}</td>"
                          f"<td>{act}</td><td>{s['mean_pearson']:.3f} / {s['min_pearson']:.3f}</td>"
                          f"<td>{s['mean_spearman']:.3f} / {s['min_spearman']:.3f}</td>"
                          f"<td>{s['mean_iou']:.3f} / {s['min_iou']:.3f}</td></tr>")
    image_rows = []
    for row in result["images"]:
        i = index[row["image"]]
        view = views[i]
        top1 = (f"{row['reference_top1']} {html.escape(name(row['reference_top1']))}" if row["top1_agrees"] else
                f"<b>{row['reference_top1']} {html.escape(name(row['reference_top1']))} → "
                f"{row['candidate_top1']} {html.escape(name(row['candidate_top1']))}</b>")
        for k, (r, c) in enumerate(pairs):
            a, b = ref_res.maps[r][i], cand_res.maps[c][i]
            f = row["layers"][r]
            head = (f'<td rowspan="{len(pairs)}"><img src="{_png(view)}"><br>{html.escape(row["image"].split("/")[-1])}'
                    f'<br>agreement {row["agreement"]:.3f}</td>') if k == 0 else ""
            image_rows.append(
                f"<tr>{head}<td><img src=\"{_png(overlay(view, a, diverging=signed))}\"></td>"
                f"<td><img src=\"{_png(overlay(view, b, diverging=signed))}\"></td>"
                f"<td><img src=\"{_png(overlay(view, _difference(a, b), alpha=0.7, diverging=True))}\"></td>"
                f"<td style='text-align:left'>layer {html.escape(r)}<br>Pearson {f['pearson']:.3f} · Spearman "
                f"{f['spearman']:.3f} · top-{result['top_percent']:g}% IoU {f['iou']:.3f} · largest pixel "
                f"difference {fmt(f['max_abs_difference'])}<br>top-1 {top1}<br>"
                f"explained class {row['target']} ({html.escape(name(row['target']))}): score "
                f"{fmt(row['score_delta'], '+.3f')}, probability {fmt(row['probability_delta'], '+.4f')}</td></tr>")
    matches = "".join(f"<tr><td>{html.escape(m['reference'])}</td><td>{html.escape(m['candidate'] or '–')}</td>"
                      f"<td>{m['how']}</td></tr>" for m in result["all_matches"])
    verdict = (f'<p style="font-size:16px;color:{"#080" if result["passed"] else "#b00"}"><b>'
               f'{html.escape(result["verdict"])}</b></p>') if "verdict" in result else ""
    s = result["summary"]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>onnxcam comparison</title>
<style>body{{font-family:sans-serif;margin:20px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:center;font-size:13px}}</style></head><body>
<h1>onnxcam comparison</h1>{verdict}
<p>reference {html.escape(result["reference"])}<br>candidate {html.escape(result["candidate"])}<br>
method {html.escape(result["method"])} · {len(result["images"])} images · providers
{html.escape(result["provider"]["reference"])} / {html.escape(result["provider"]["candidate"])} ·
top-1 agreement {s["top1_agreement"]:.0%} · max |score change| {fmt(s["max_abs_score_delta"])} ·
mean |change of the explained score| {fmt(s["mean_abs_target_score_delta"])}</p>
<table><tr><th>reference layer</th><th>candidate layer</th><th>matched</th><th>activation Pearson</th>
<th>map Pearson mean / min</th><th>map Spearman mean / min</th><th>top-{result["top_percent"]:g}% IoU mean / min</th></tr>
{"".join(layer_rows)}</table>
<h2>Images, least agreement first</h2>
<p>Difference map: red where the candidate's heatmap is higher, blue where it is lower, white where they agree.</p>
<table><tr><th>image</th><th>reference</th><th>candidate</th><th>difference</th><th>figures</th></tr>
{"".join(image_rows)}</table>
<details><summary>Layer matching for every reference layer</summary><table>
<tr><th>reference</th><th>candidate</th><th>how</th></tr>{matches}</table></details></body></html>"""
