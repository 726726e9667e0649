"""Self-contained HTML reports (no files beside them): `render` for evaluate, with the
metrics table, deletion / insertion / ROAD / sanity plots as inline SVG (svgplot), and overlays per
image x method x layer as inline PNGs at the photo's aspect ratio with the pointing-game boxes;
`render_comparison` for compare. Dataset runs (a folder, glob or list file) get `render_dataset` and
`render_dataset_comparison`: figures with confidence intervals over the images in a table sorted
by a few lines of inline script, histograms, and the images picked from the index."""
from __future__ import annotations

import base64
import html
import math

import cv2
import numpy as np

from .methods import get
from .metrics.sanity import SIMILAR_SPEARMAN
from .postprocess import overlay
from .svgplot import Series, Style, histogram, line_plot, style

THUMB_WIDTH = 176
CSS = """body{font-family:sans-serif;margin:20px;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:center;font-size:13px;vertical-align:top}
.plots{display:flex;flex-wrap:wrap;gap:18px}.flag{color:#b00;font-weight:bold}
.note{color:#555;font-size:13px;max-width:1000px}"""


def _png(rgb: np.ndarray, size: int = 128, aspect: float | None = None) -> str:
    """A data: URI of the image `size` pixels wide; its height keeps `aspect` (height / width,
    the photo's) or else the image's own."""
    h, w = rgb.shape[:2]
    ratio = aspect if aspect is not None else h / w
    height = int(min(max(round(size * ratio), 16), 4 * size))
    small = cv2.resize(rgb, (size, height), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def _aspect(evaluation: dict, i: int, view: np.ndarray) -> float:
    """Height / width the thumbnail of image i should have: the photo's, when the model saw the whole
    photo stretched; the view's own when it saw a centre crop (the crop is shown unsquashed)."""
    sizes = evaluation.get("image_sizes")
    if sizes and evaluation.get("preprocess", {}).get("resize", "stretch") == "stretch":
        h, w = sizes[i]
        return h / w
    return view.shape[0] / view.shape[1]


def _short(text: str, limit: int = 58) -> str:
    return text if len(text) <= limit else text[:limit // 2 - 1] + "…" + text[-(limit - limit // 2):]


def draw_boxes(rgb: np.ndarray, boxes, heat: np.ndarray | None = None, hit: bool | None = None) -> np.ndarray:
    """Object boxes (x0, y0, x1, y1 in the view's pixels) as white-on-black frames, and the map's
    maximum as a ring (green: the pointing game counts a hit, red: a miss)."""
    out = rgb.copy()
    scale = max(1, round(max(out.shape[:2]) / 224))
    for x0, y0, x1, y1 in boxes:
        p0, p1 = (int(round(x0)), int(round(y0))), (int(round(x1)) - 1, int(round(y1)) - 1)
        cv2.rectangle(out, p0, p1, (0, 0, 0), 3 * scale)
        cv2.rectangle(out, p0, p1, (255, 255, 255), scale)
    if heat is not None:
        y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
        fy, fx = out.shape[0] / heat.shape[0], out.shape[1] / heat.shape[1]
        centre = (int(x * fx), int(y * fy))
        color = (0, 200, 0) if hit else (230, 0, 0) if hit is not None else (255, 255, 0)
        cv2.circle(out, centre, 9 * scale, (0, 0, 0), 4 * scale, cv2.LINE_AA)
        cv2.circle(out, centre, 9 * scale, color, 2 * scale, cv2.LINE_AA)
    return out


def _curve_series(evaluation: dict, key: str) -> list[Series]:
    """Mean curve of `key` per method @ layer, one style each."""
    out = []
    for method, data in evaluation["methods"].items():
        for layer, r in data["layers"].items():
            curves = r["curves"].get(key)
            if not curves:
                continue
            ys = np.mean(np.asarray(curves, np.float64), axis=0)
            xs = np.linspace(0.0, 1.0, len(ys))
            out.append(Series(_short(f"{method} @ {layer}"), xs.tolist(), ys.tolist(), style(len(out))))
    return out


def _road_series(evaluation: dict, percentages) -> list[Series]:
    """ROAD MoRF (solid) and LeRF (dashed) per method @ layer: colour and marker name the method."""
    out, k = [], 0
    for method, data in evaluation["methods"].items():
        for layer, r in data["layers"].items():
            if "road_morf" not in r["curves"]:
                continue
            base = style(k)
            for order, dash in (("morf", ""), ("lerf", "8,5")):
                ys = np.mean(np.asarray(r["curves"][f"road_{order}"], np.float64), axis=0)
                out.append(Series(_short(f"{method} @ {layer} {order[:2].upper()}{order[2:].upper()}"
                                         .replace("MORF", "MoRF").replace("LERF", "LeRF")),
                                  list(percentages), ys.tolist(), Style(base.color, dash, base.marker, base.size, base.width)))
            k += 1
    return out


def _plots(evaluation: dict) -> str:
    prob = evaluation.get("metric_score", "class probability")   # a raw score S for non-class targets
    parts = []
    deletion = _curve_series(evaluation, "deletion")
    if deletion:
        parts.append(line_plot(deletion, "Deletion (lower is better)", "fraction of pixels removed, most "
                               "relevant first", prob, x_ticks=[0, 0.25, 0.5, 0.75, 1.0]))
        parts.append(line_plot(_curve_series(evaluation, "insertion"), "Insertion (higher is better)",
                               "fraction of pixels revealed, most relevant first", prob,
                               x_ticks=[0, 0.25, 0.5, 0.75, 1.0]))
    percentages = evaluation.get("road_percentages") or [10, 30, 50, 70, 90]
    road = _road_series(evaluation, percentages)
    if road:
        parts.append(line_plot(road, "ROAD: MoRF (lower) and LeRF (higher)", "% of pixels removed and "
                               "imputed", prob, x_ticks=[0] + list(percentages) + [100]
                               if min(percentages) > 0 else list(percentages)))
    return '<div class="plots">' + "".join(f"<div>{p}</div>" for p in parts) + "</div>"


def _sanity(evaluation: dict) -> str:
    methods = {m: d["sanity"] for m, d in evaluation["methods"].items() if d.get("sanity")}
    if not methods:
        return ""
    rows, flagged = [], []
    for m, steps in methods.items():
        for row in steps:
            similar = row.get("stays_similar", row["spearman"] > SIMILAR_SPEARMAN)
            mark = '<span class="flag">⚠ stays similar</span>' if similar else "decorrelates"
            rows.append(f"<tr><td>{html.escape(m)}</td><td>{row['randomized_layers']}</td>"
                        f"<td{' class=flag' if similar else ''}>{row['spearman']:.2f}</td><td>{row['ssim']:.2f}</td>"
                        f"<td>{mark}</td></tr>")
        first = next((r for r in steps if r.get("stays_similar", r["spearman"] > SIMILAR_SPEARMAN)), None)
        if first is not None:
            flagged.append(f"<b>{html.escape(m)}</b> (Spearman {first['spearman']:.2f} with the top "
                           f"{first['randomized_layers']} layer{'s' if first['randomized_layers'] > 1 else ''} random)")
    ks = sorted({r["randomized_layers"] for steps in methods.values() for r in steps})
    series = [Series(m, [float(ks.index(r["randomized_layers"])) for r in steps], [r["spearman"] for r in steps],
                     style(i)) for i, (m, steps) in enumerate(methods.items())]
    plot = line_plot(series, "Sanity: similarity to the original maps", "top layers randomized",
                     "Spearman to the original map", x_ticks=[float(i) for i in range(len(ks))] if len(ks) > 1
                     else [-0.5, 0.0, 0.5], x_tick_labels=[str(k) for k in ks] if len(ks) > 1 else ["", str(ks[0]), ""],
                     y_range=(min(0.0, min(r["spearman"] for s in methods.values() for r in s)), 1.0),
                     reference=(SIMILAR_SPEARMAN, f"flag above {SIMILAR_SPEARMAN:g}"))
    warning = (f'<p class="flag">⚠ Maps that stay similar after randomization show the image more than the '
               f'model: {"; ".join(flagged)}.</p>') if flagged else \
        '<p>Every method decorrelates when the model is randomized.</p>'
    return (f"<h2>Sanity check (cascading randomization)</h2>{warning}<p class=note>The top k layers with "
            f"weights are re-initialized and each method explains the same images again; Spearman and SSIM "
            f"compare the new maps to the original ones. A method is flagged when Spearman stays above "
            f"{SIMILAR_SPEARMAN:g}.</p><div class=plots><div><table><tr><th>method</th><th>top layers "
            f"randomized</th><th>Spearman</th><th>SSIM</th><th></th></tr>{''.join(rows)}</table></div>"
            f"<div>{plot}</div></div>")


def _cell(value, spec: str) -> str:
    return "–" if value is None or not math.isfinite(value) else format(value, spec)


def render(evaluation: dict, results: dict, views: list[np.ndarray], labels=None) -> str:
    """HTML for an evaluate() dict, the Results it came from and the images' uint8 views."""
    rows = []
    for method, data in evaluation["methods"].items():
        for layer, r in data["layers"].items():
            point = (f"{_cell(r['pointing_hit_rate'] * 100, '.0f')}% / {_cell(r['pointing_energy'], '.2f')}"
                     if "pointing_hit_rate" in r else "–")
            road_cell = (f"{_cell(r['road_morf'], '.3f')} / {_cell(r['road_lerf'], '.3f')}"
                         if "road_morf" in r else "–")
            rows.append(f"<tr><td>{html.escape(method)}</td><td>{html.escape(layer)}</td>"
                        f"<td>{_cell(r['average_drop'], '.1f')}</td><td>{_cell(r['increase_in_confidence'], '.1f')}</td>"
                        f"<td>{_cell(r['deletion_auc'], '.3f')}</td><td>{_cell(r['insertion_auc'], '.3f')}</td>"
                        f"<td>{road_cell}</td><td>{point}</td></tr>")
    boxes = evaluation.get("boxes")
    grid = []
    for i, (path, view) in enumerate(zip(evaluation["images"], views)):
        aspect = _aspect(evaluation, i, view)
        name = path.replace("\\", "/").split("/")[-1]
        own = boxes[i] if boxes else []
        photo = draw_boxes(view, own) if own else view
        h, w = (evaluation.get("image_sizes") or [view.shape[:2]])[i]
        cells = [f'<td><img src="{_png(photo, THUMB_WIDTH, aspect)}" alt="{html.escape(name)}"><br>'
                 f'{html.escape(name)}<br><small>{w}×{h}</small></td>']
        for method, res in results.items():
            t = int(res.target[i])
            cls = labels[t] if labels else str(t)
            for layer, maps in res.maps.items():
                img = overlay(view, maps[i], diverging=get(method).signed)
                if own:
                    hits = evaluation["methods"][method]["layers"][layer]["per_image"].get("pointing_hit", {})
                    img = draw_boxes(img, own, maps[i], hits.get(name))
                cells.append(f'<td><img src="{_png(img, THUMB_WIDTH, aspect)}" alt="{html.escape(method)}"><br>'
                             f'{html.escape(method)}<br><small>{html.escape(_short(layer, 40))} · '
                             f'{html.escape(cls)}</small></td>')
        grid.append("<tr>" + "".join(cells) + "</tr>")
    box_note = ("<p class=note>White frames: the object boxes; ring: the map's maximum (green: the pointing "
                "game counts a hit, within 15 pixels of a box; red: a miss).</p>") if boxes else ""
    road_note = (f"ROAD at {', '.join(f'{p:g}' for p in evaluation['road_percentages'])} %"
                 if evaluation.get("road_percentages") else "")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>onnxcam evaluation</title>
<style>{CSS}</style></head><body>
<h1>onnxcam evaluation</h1><p>model {html.escape(evaluation.get("model", ""))} · {len(views)} image{"s" if len(views) != 1 else ""} ·
deletion/insertion with {evaluation["steps"]} steps, deletion baseline {html.escape(evaluation["baseline"])}
{" · " + road_note if road_note else ""}</p>
<table><tr><th>method</th><th>layer</th><th>Average Drop % (lower is better)</th><th>Increase in Confidence %</th>
<th>Deletion AUC (lower)</th><th>Insertion AUC (higher)</th><th>ROAD MoRF (lower) / LeRF (higher)</th>
<th>pointing hit / energy</th></tr>{"".join(rows)}</table>
<h2>Mean curves</h2>{_plots(evaluation)}{_sanity(evaluation)}
<h2>Overlays</h2>{box_note}<table>{"".join(grid)}</table></body></html>"""


def fmt(value, spec: str = ".3f") -> str:
    """A figure for people; "–" where there is none (JSON null: not computed, or not finite)."""
    return "–" if value is None else format(value, spec)


def _difference(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """cand - ref in [-1, 1] as [0, 1] around 0.5 for the diverging colormap (red: the candidate
    looks there more, blue: less)."""
    return np.clip(0.5 + 0.5 * (cand - ref), 0, 1)


def _pair_cells(view: np.ndarray, a: np.ndarray, b: np.ndarray, signed: bool, aspect: float | None = None,
                size: int = 128) -> str:
    """Three cells: the reference's overlay, the candidate's, and their difference."""
    return "".join(f'<td><img src="{_png(img, size, aspect)}"></td>' for img in (
        overlay(view, a, diverging=signed), overlay(view, b, diverging=signed),
        overlay(view, _difference(a, b), alpha=0.7, diverging=True)))


def _verdict(result: dict) -> str:
    """compare's one-line verdict, green on a pass and red on a fail ("" when nothing was gated)."""
    return (f'<p style="font-size:16px;color:{"#080" if result["passed"] else "#b00"}"><b>'
            f'{html.escape(result["verdict"])}</b></p>') if "verdict" in result else ""


def render_comparison(result: dict, ref_res, cand_res, views: list[np.ndarray], labels=None,
                      aspects: list[float] | None = None) -> str:
    """HTML for a compare() dict: verdict, per-layer summary, layer matching, and per image (worst
    first) the reference and candidate overlays side by side with their difference. aspects: per
    image (in image_order) the height / width its thumbnails should have (the photo's, for a
    stretched view); by default the view's own."""
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
        aspect = aspects[i] if aspects else None
        top1 = (f"{row['reference_top1']} {html.escape(name(row['reference_top1']))}" if row["top1_agrees"] else
                f"<b>{row['reference_top1']} {html.escape(name(row['reference_top1']))} → "
                f"{row['candidate_top1']} {html.escape(name(row['candidate_top1']))}</b>")
        if "reference_labels" in row:   # a multi-label head's decision is its set of labels on
            top1 = (f"labels on {row['reference_labels']}" if row["decision_agreement"] == 1 else
                    f"<b>labels on {row['reference_labels']} → {row['candidate_labels']}</b>")
        if "region_iou" in row:   # a segmenter's decision is its class per pixel (metrics/decisions.py)
            top1 = (f"{row['decision_agreement']:.2%} of the pixels keep their class; class {row['target']}'s "
                    f"region IoU {row['region_iou']:.3f}")
        for k, (r, c) in enumerate(pairs):
            a, b = ref_res.maps[r][i], cand_res.maps[c][i]
            f = row["layers"][r]
            head = (f'<td rowspan="{len(pairs)}"><img src="{_png(view, aspect=aspect)}"><br>{html.escape(row["image"].split("/")[-1])}'
                    f'<br>agreement {row["agreement"]:.3f}</td>') if k == 0 else ""
            image_rows.append(
                f"<tr>{head}{_pair_cells(view, a, b, signed, aspect)}"
                f"<td style='text-align:left'>layer {html.escape(r)}<br>Pearson {f['pearson']:.3f} · Spearman "
                f"{f['spearman']:.3f} · top-{result['top_percent']:g}% IoU {f['iou']:.3f} · largest pixel "
                f"difference {fmt(f['max_abs_difference'])}<br>{'' if {'region_iou', 'reference_labels'} & set(row) else 'top-1 '}{top1}<br>"
                f"explained class {row['target']} ({html.escape(name(row['target']))}): score "
                f"{fmt(row['score_delta'], '+.3f')}, probability {fmt(row['probability_delta'], '+.4f')}</td></tr>")
    matches = "".join(f"<tr><td>{html.escape(m['reference'])}</td><td>{html.escape(m['candidate'] or '–')}</td>"
                      f"<td>{m['how']}</td></tr>" for m in result["all_matches"])
    verdict = _verdict(result)
    s = result["summary"]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>onnxcam comparison</title>
<style>body{{font-family:sans-serif;margin:20px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:center;font-size:13px}}</style></head><body>
<h1>onnxcam comparison</h1>{verdict}
<p>reference {html.escape(result["reference"])}<br>candidate {html.escape(result["candidate"])}<br>
method {html.escape(result["method"])} · {len(result["images"])} images · providers
{html.escape(result["provider"]["reference"])} / {html.escape(result["provider"]["candidate"])} ·
{html.escape(s.get("decision", "top-1"))} agreement {s["top1_agreement"]:.{2 if s.get("per_pixel") else 0}%} · max |score change| {fmt(s["max_abs_score_delta"])} ·
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


# ----- dataset runs (a folder, glob or list file): figures with intervals from the index

SORTABLE_JS = """document.querySelectorAll('table.sortable').forEach(function(t){
t.querySelectorAll('th').forEach(function(th,i){th.title='click to sort';th.style.cursor='pointer';
th.addEventListener('click',function(){var b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows),
up=th.dataset.dir!=='up';th.dataset.dir=up?'up':'down';rows.sort(function(x,y){
var a=x.cells[i].dataset.v,c=y.cells[i].dataset.v;a=a===undefined?x.cells[i].textContent:a;
c=c===undefined?y.cells[i].textContent:c;var n=parseFloat(a)-parseFloat(c);
return (isNaN(n)?a.localeCompare(c):n)*(up?1:-1);});rows.forEach(function(r){b.appendChild(r);});});});});"""

#: per-image figures of a dataset evaluation: column title, number format, scale for display
DATASET_FIGURES = {"average_drop": ("Average Drop % (lower)", ".1f"), "increase_in_confidence": ("Increase in "
                   "Confidence %", ".1f"), "deletion_auc": ("Deletion AUC (lower)", ".3f"),
                   "insertion_auc": ("Insertion AUC (higher)", ".3f"), "road_morf": ("ROAD MoRF (lower)", ".3f"),
                   "road_lerf": ("ROAD LeRF (higher)", ".3f"), "pointing_hit": ("pointing hit rate", ".2f"),
                   "pointing_energy": ("pointing energy (higher)", ".3f")}


def _interval_cell(figure: dict | None, spec: str) -> str:
    """mean [low, high] with the mean as the sort key; "–" where the figure is missing."""
    if not figure or not math.isfinite(figure["mean"]):
        return '<td data-v="">–</td>'
    return (f'<td data-v="{figure["mean"]:.6g}">{format(figure["mean"], spec)}<br><small>'
            f'[{_cell(figure["low"], spec)}, {_cell(figure["high"], spec)}]</small></td>')


def _figure_table(groups: list[dict], names: dict[str, tuple[str, str]], extra_head: str = "",
                  extra=lambda g: "") -> str:
    """A sortable table: method, layer, images, then mean [interval] per figure present."""
    shown = [n for n in names if any(n in g["metrics"] for g in groups)]
    head = "".join(f"<th>{html.escape(names[n][0])}</th>" for n in shown)
    body = "".join(f"<tr><td>{html.escape(g['method'])}</td><td>{html.escape(_short(g['layer'], 40))}</td>"
                   f"<td data-v=\"{g['n']}\">{g['n']}</td>{extra(g)}"
                   + "".join(_interval_cell(g["metrics"].get(n), names[n][1]) for n in shown) + "</tr>"
                   for g in groups)
    return (f'<table class="sortable"><thead><tr><th>method</th><th>layer</th><th>images</th>{extra_head}{head}'
            f"</tr></thead><tbody>{body}</tbody></table>")


def _histograms(summary: dict, names: dict[str, tuple[str, str]]) -> str:
    plots = [histogram(h["counts"], h["edges"], f"{names[n][0].split(' (')[0]} per image", names[n][0])
             for n, h in summary["histograms"].items() if n in names]
    return '<div class="plots">' + "".join(f"<div>{p}</div>" for p in plots) + "</div>"


def _thumb(view: np.ndarray | None, heat: np.ndarray | None, method: str, caption: str) -> str:
    if view is None or heat is None:
        return f"<td>{caption}<br><small>(image not readable now)</small></td>"
    img = overlay(view, heat, diverging=get(method).signed)
    return f'<td><img src="{_png(img, 150)}" alt="{html.escape(caption)}"><br>{caption}</td>'


def _name(path: str) -> str:
    return html.escape(_short(path.replace("\\", "/").split("/")[-1], 30))


def _ranked(groups: list[dict], names: dict, views: dict, maps: dict, classes: dict) -> str:
    """Per method x layer, one row per ranked figure: its worst images, then its best, with overlays."""
    parts = []
    for g in groups:
        rows = []
        for n, worst in g["worst"].items():
            spec = names.get(n, (n, ".3f"))[1]
            cells = [[_thumb(views.get(p["path"]), maps.get((p["path"], g["method"], g["layer"])), g["method"],
                             f"{_name(p['path'])}<br>{format(p['value'], spec)}<br><small>"
                             f"{_class_caption(classes, p['path'], g)}</small>") for p in picked]
                     for picked in (worst, g["best"][n])]
            rows.append(f"<tr><th>{html.escape(names.get(n, (n,))[0])}</th>{''.join(cells[0])}"
                        f"<td style='border:none;width:12px'></td>{''.join(cells[1])}</tr>")
        width = max((len(w) for w in g["worst"].values()), default=1)
        parts.append(f"<h3>{html.escape(g['method'])} @ {html.escape(_short(g['layer'], 60))}</h3><table><tr>"
                     f"<th>figure</th><th colspan={width}>worst images</th><td style='border:none'></td>"
                     f"<th colspan={width}>best images</th></tr>{''.join(rows)}</table>")
    return "".join(parts)


def _class_caption(classes: dict, path: str, group: dict) -> str:
    return html.escape(_short(str(classes.get((path, group["method"], group["layer"]), "")), 28))


def picked_keys(summary: dict) -> set[tuple[str, str, str]]:
    """(path, method, layer) of every image the report shows (dataset/picked.py reads their maps)."""
    return {(p["path"], g["method"], g["layer"]) for g in summary["groups"]
            for which in ("worst", "best") for picked in g[which].values() for p in picked}


def _interval_note(summary: dict) -> str:
    iv = summary["interval"]
    return (f"Brackets: the {iv['level']:.0%} {iv['kind']} interval of the mean over images ({iv['resamples']} "
            f"resamples of the images, seed {iv['seed']}). Click a column title to sort.")


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}th{{background:#f4f4f4}}</style></head><body>{body}<script>{SORTABLE_JS}</script>"
            "</body></html>")


def render_dataset(evaluation: dict, views: dict, maps: dict, classes: dict | None = None) -> str:
    """HTML for a dataset evaluation (dataset/evaluate_run.dataset_evaluation): the sortable table
    of means with intervals, mean curves, histograms of the per-image figures, and the worst and
    best images per figure with their overlays (views {path: view}, maps {(path, method, layer): map},
    classes {(path, method, layer): the explained class, for the captions})."""
    groups = evaluation["groups"]
    curves = {"methods": {}}   # the mean curves in the shape the file-run plots take
    for g in groups:
        c = g["mean_curves"]
        curves["methods"].setdefault(g["method"], {"layers": {}})["layers"][g["layer"]] = {
            "curves": {k: [v] for k, v in c.items()}}
    plots = _plots(curves | {k: evaluation[k] for k in ("metric_score", "road_percentages")})
    errors = _unexplained(evaluation["errors"])
    body = (f"<h1>onnxcam evaluation of a dataset</h1><p>model {html.escape(evaluation['model'])} · "
            f"{evaluation['images']} images{errors} · deletion/insertion with {evaluation['steps']} steps, "
            f"baseline {html.escape(evaluation['baseline'])} · index {html.escape(evaluation['index'])}</p>"
            f"{_figure_table(groups, DATASET_FIGURES)}<p class=note>{_interval_note(evaluation)}</p>"
            f"<h2>Mean curves</h2>{plots}<h2>Per-image figures</h2>{_histograms(evaluation, DATASET_FIGURES)}"
            "<h2>Worst and best images</h2><p class=note>Per figure, the images it rates worst and best, with "
            f"the map the run computed.</p>{_ranked(groups, DATASET_FIGURES, views, maps, classes or {})}")
    return _page("onnxcam evaluation", body)


def _unexplained(count: int) -> str:
    """The header's note on the images a dataset run could not explain (none: nothing)."""
    return f" · {count} could not be explained (see the index's error column)" if count else ""


#: per-image figures of a dataset comparison, per layer
COMPARISON_FIGURES = {"pearson": ("map Pearson", ".3f"), "spearman": ("map Spearman", ".3f"),
                      "iou": ("top-k% IoU", ".3f"), "max_abs_difference": ("largest pixel difference", ".3f"),
                      "activation_pearson": ("activation Pearson", ".4f"),
                      "decision_agreement": ("decision agreement", ".3f"),
                      "score_delta": ("change of the explained score", "+.3f")}


def render_dataset_comparison(result: dict, views: dict, reference_maps: dict, candidate_maps: dict,
                              classes: dict | None = None) -> str:
    """HTML for a dataset comparison (dataset/compare_run.dataset_comparison): the verdict, the
    sortable table of figures per layer with intervals, histograms of the per-image agreement, and
    per layer the images where the candidate's evidence moved most (reference, candidate, difference)."""
    figures = result["figures"]
    names = dict(COMPARISON_FIGURES)
    names["iou"] = (f"top-{result['top_percent']:g}% IoU", ".3f")
    candidates = {m["reference"]: m["candidate"] or "–" for m in result["matching"]}
    table = _figure_table(figures["groups"], names, "<th>candidate layer</th>",
                          lambda g: f"<td>{html.escape(_short(candidates.get(g['layer'], '–'), 40))}</td>")
    signed = get(result["method"]).signed
    gate = result["gate"]
    moved = []
    for g in figures["groups"]:
        rows = []
        for p in g["worst"].get(gate, []):
            key = (p["path"], g["method"], g["layer"])
            view, a, b = views.get(p["path"]), reference_maps.get(key), candidate_maps.get(key)
            cells = _pair_cells(view, a, b, signed, size=150) if view is not None and a is not None and b is not None \
                else "<td colspan=3>(image not readable now)</td>"
            rows.append(f"<tr><td>{_name(p['path'])}<br>{names[gate][0]} {p['value']:.3f}<br><small>"
                        f"{_class_caption(classes or {}, p['path'], g)}</small></td>{cells}</tr>")
        moved.append(f"<h3>{html.escape(_short(g['layer'], 60))}</h3><table><tr><th>image</th><th>reference</th>"
                     f"<th>candidate</th><th>difference</th></tr>{''.join(rows)}</table>")
    verdict = _verdict(result)
    s = result["summary"]
    errors = _unexplained(figures["errors"])
    body = (f"<h1>onnxcam comparison over a dataset</h1>{verdict}<p>reference {html.escape(str(result['reference']))}"
            f"<br>candidate {html.escape(str(result['candidate']))}<br>method {html.escape(result['method'])} · "
            f"{result['images_total']} images{errors} · {html.escape(s['decision'])} agreement "
            f"{s['top1_agreement']:.{2 if s['per_pixel'] else 1}%} · index {html.escape(result['index'])}</p>"
            f"{table}<p class=note>{_interval_note(figures)}</p>"
            f"<h2>Agreement per image</h2>{_histograms(figures, {k: names[k] for k in ('pearson', 'spearman', 'iou')})}"
            f"<h2>Where the candidate's evidence moved most</h2><p class=note>Per layer, the images of least "
            f"{html.escape(names[gate][0])}. Difference: red where the candidate's heatmap is higher, blue where "
            f"it is lower, white where they agree.</p>{''.join(moved)}")
    return _page("onnxcam comparison", body)
