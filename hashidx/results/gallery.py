"""Query results as a static HTML page: each query's scene beside its top-k, thumbnails embedded."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from hashidx.codes.codefile import Item
from hashidx.data.images import load_image
from hashidx.data.rasters import RGB, Radiometry, is_raster, read_validity, split_chip
from hashidx.io.atomic import atomic_path
from hashidx.io.progress import progress
from hashidx.results.query import Results
from hashidx.version import __version__

GENERATOR = f"hashidx {__version__} gallery"  # what `hashidx info` knows the page by
THUMB_PX = 110
PER_PAGE = 10
# Frame colours the screenshot test looks for: pure enough to count in a PNG, distinct from aerial scenes.
COLOURS = {"match": "#00c853", "miss": "#ff1744", "unknown": "#9e9e9e", "query": "#2962ff"}


def thumbnail_bytes(path: Path, size: int = THUMB_PX, radiometry: Radiometry = RGB) -> tuple[bytes, str]:
    """A size x size picture of the image or chip (the decoder and scaling the features use; the first three bands
    as RGB) and its media type: a JPEG, or a PNG whose no-data pixels are transparent where the raster has any.
    An unreadable file raises as its read does."""
    pixels = (load_image(path, size, radiometry.rgb_view()) * 255).round().astype(np.uint8)
    valid = read_validity(path, size) if is_raster(split_chip(path)[0]) else None
    buf = io.BytesIO()
    if valid is None or valid.all():
        Image.fromarray(pixels).save(buf, "JPEG", quality=82)
        return buf.getvalue(), "image/jpeg"
    Image.fromarray(np.dstack([pixels, np.where(valid, 255, 0).astype(np.uint8)]), "RGBA").save(buf, "PNG")
    return buf.getvalue(), "image/png"


def thumbnail(path: Path, size: int = THUMB_PX, radiometry: Radiometry = RGB) -> str | None:
    """`thumbnail_bytes` as a data URI, or None when the file is unreadable."""
    try:
        data, media = thumbnail_bytes(path, size, radiometry)
    except Exception:  # a gallery shows a placeholder for a missing or unreadable file; it never stops
        return None
    return f"data:{media};base64," + base64.b64encode(data).decode("ascii")


def place(item: Item | None) -> str | None:
    """`8.58502°S 115.16146°E`: where a result's footprint is centred, for people."""
    if item is None or item.lonlat is None:
        return None
    lon, lat = item.lonlat
    return f"{abs(lat):.5f}°{'N' if lat >= 0 else 'S'} {abs(lon):.5f}°{'E' if lon >= 0 else 'W'}"


def gallery_data(results: Results, title: str, radiometry: Radiometry = RGB) -> dict:
    """What the page shows, as JSON: queries with their results (and where they are), and one thumbnail per
    distinct image."""
    files: dict[str, Path] = {}

    def key(file: Path | None) -> str | None:
        if file is None:
            return None
        k = str(file)
        files.setdefault(k, file)
        return k

    def shares(a: str, b: str) -> bool:  # multi-label names come joined by ','
        return bool(set(a.split(",")) & set(b.split(",")))

    queries = []
    for qi, name in enumerate(results.queries):
        qlabel = results.query_labels[qi] if qi < len(results.query_labels) else None
        qfile = results.query_files[qi] if qi < len(results.query_files) else None
        hits = []
        scores = None if results.scores is None else results.scores[qi].tolist()
        for j, (d, i) in enumerate(zip(results.distances[qi].tolist(), results.ids[qi].tolist())):
            if i < 0:
                continue
            label = results.labels.get(i)
            verdict = "unknown" if qlabel is None or label is None else ("match" if shares(label, qlabel) else "miss")
            path = results.paths.get(i, "")
            scene, window = split_chip(path)
            hits.append(
                {
                    "id": i,
                    "path": path,
                    "scene": scene.name,
                    "window": None if window is None else f"{window.col},{window.row} ({window.width}×{window.height})",
                    "score": None if scores is None else round(float(scores[j]), 2),
                    "label": label,
                    "distance": d,
                    "verdict": verdict,
                    "img": key(results.files.get(i)),
                    "place": place(results.places.get(i)),
                    "lonlat": None if i not in results.places else results.places[i].lonlat,
                }
            )
        qscene, qwindow = split_chip(name)
        queries.append(
            {
                "name": name,
                "scene": qscene.name,
                "window": None
                if qwindow is None
                else f"{qwindow.col},{qwindow.row} ({qwindow.width}×{qwindow.height})",
                "label": qlabel,
                "img": key(qfile),
                "results": hits,
            }
        )
    thumbs = {}
    for k in progress(list(files), "gallery thumbnails", unit="img"):
        uri = thumbnail(files[k], radiometry=radiometry)
        if uri is not None:
            thumbs[k] = uri
    return {"title": title, "per_page": PER_PAGE, "colours": COLOURS, "queries": queries, "thumbs": thumbs}


def write_gallery(
    results: Results, path: str | Path, title: str = "hashidx results", radiometry: Radiometry = RGB
) -> None:
    """One self-contained HTML file (thumbnails inline, read with the model's `radiometry`), paged PER_PAGE
    queries at a time; written atomically."""
    # "</" inside a script element would end it early: a file name could otherwise inject markup.
    data = json.dumps(gallery_data(results, title, radiometry)).replace("</", "<\\/")
    page = _TEMPLATE.replace("{{title}}", html.escape(title)).replace("{{generator}}", GENERATOR)
    page = page.replace("{{data}}", data)
    for name, colour in COLOURS.items():
        page = page.replace("{{" + name + "}}", colour)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{title}}</title>
<meta name="generator" content="{{generator}}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 13px/1.35 system-ui, sans-serif; margin: 12px; color: #222; background: #fafafa; }
h1 { font-size: 18px; margin: 0 0 4px; }
.nav { margin: 8px 0 14px; display: flex; gap: 8px; align-items: center; }
.nav button { font: inherit; padding: 3px 10px; }
.legend span { display: inline-block; padding: 0 6px; margin-right: 6px; border-left: 12px solid; }
.row { display: flex; flex-wrap: wrap; gap: 6px; align-items: flex-start; margin-bottom: 14px; padding-bottom: 10px;
       border-bottom: 1px solid #ddd; }
.query { margin-right: 10px; }
.cell { width: 120px; font-size: 11px; overflow: hidden; }
.frame { box-sizing: border-box; width: 120px; height: 120px; border: 5px solid {{unknown}};
         display: flex; align-items: center; justify-content: center;
         background: #eee; color: #777; text-align: center; }
.frame img { max-width: 110px; max-height: 110px; display: block; }
.query .frame { border-color: {{query}}; }
.match .frame { border-color: {{match}}; }
.miss .frame { border-color: {{miss}}; }
.name { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.dist { font-weight: 600; white-space: nowrap; }
.window { color: #444; font-variant-numeric: tabular-nums; }
.frame { background-image: repeating-conic-gradient(#ddd 0 25%, #f4f4f4 0 50%); background-size: 12px 12px; }
.place { display: block; color: #1a5fb4; font-size: 10px; }
</style></head>
<body>
<h1>{{title}}</h1>
<div id="summary"></div>
<div class="legend"><span style="border-color:{{query}}">query</span><span
 style="border-color:{{match}}">same class</span><span style="border-color:{{miss}}">other class</span><span
 style="border-color:{{unknown}}">class unknown</span></div>
<div class="nav"><button id="prev">&larr; previous</button><span id="page"></span><button
 id="next">next &rarr;</button></div>
<div id="rows"></div>
<script id="data" type="application/json">{{data}}</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const pages = Math.max(1, Math.ceil(D.queries.length / D.per_page));
let loaded = 0;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function cell(cls, img, lines, tip, r) {
  const c = el("div", "cell " + cls);
  c.title = tip;
  const f = el("div", "frame");
  if (img && D.thumbs[img]) {
    const i = el("img");
    i.onload = () => { loaded += 1; document.body.dataset.loaded = loaded; };
    i.src = D.thumbs[img];
    i.alt = tip;
    f.appendChild(i);
  } else {
    f.textContent = img ? "image not readable" : "no image";
  }
  c.appendChild(f);
  for (const [cls2, text] of lines) c.appendChild(el("div", cls2, text));
  if (r && r.place) {
    const a = el("a", "place", r.place);
    a.href = "https://www.openstreetmap.org/?mlat=" + r.lonlat[1] + "&mlon=" + r.lonlat[0] + "#map=17/" +
      r.lonlat[1] + "/" + r.lonlat[0];
    a.target = "_blank";
    c.appendChild(a);
  }
  return c;
}

function show(p) {
  p = Math.min(Math.max(p, 1), pages);
  location.hash = "page=" + p;
  document.getElementById("page").textContent = "page " + p + " of " + pages;
  document.getElementById("prev").disabled = p === 1;
  document.getElementById("next").disabled = p === pages;
  const rows = document.getElementById("rows");
  rows.replaceChildren();
  loaded = 0;
  for (const q of D.queries.slice((p - 1) * D.per_page, p * D.per_page)) {
    const row = el("div", "row");
    const judged = q.results.filter(r => r.verdict !== "unknown");
    const hits = judged.filter(r => r.verdict === "match").length;
    const score = judged.length ? hits + "/" + judged.length + " same class" : "";
    row.appendChild(cell("query", q.img, [["name", q.scene], ["window", q.window ? "at " + q.window : ""],
                                          ["", q.label || ""], ["", score]], q.name));
    q.results.forEach((r, n) => {
      const s = r.score === null ? "" : "  s=" + r.score.toFixed(1);
      row.appendChild(cell(r.verdict, r.img, [["dist", "#" + (n + 1) + "  d=" + r.distance + s], ["name", r.scene],
                                             ["window", r.window ? "at " + r.window : ""], ["", r.label || ""]],
                           r.path + " (id " + r.id + ", Hamming " + r.distance +
                           (r.score === null ? "" : ", score uᵀv " + r.score) + ")", r));
    });
    rows.appendChild(row);
  }
  document.body.dataset.page = p;
  document.body.dataset.cells = rows.querySelectorAll(".cell").length;
}

const judged = D.queries.flatMap(q => q.results).filter(r => r.verdict !== "unknown");
const good = judged.filter(r => r.verdict === "match").length;
document.getElementById("summary").textContent = D.queries.length + " queries, top " +
  Math.max(0, ...D.queries.map(q => q.results.length)) + " each" +
  (judged.length ? "; " + (100 * good / judged.length).toFixed(1) + "% of judged results share the query's class" : "");
document.getElementById("prev").onclick = () => show(+document.body.dataset.page - 1);
document.getElementById("next").onclick = () => show(+document.body.dataset.page + 1);
const m = /page=(\\d+)/.exec(location.hash);
show(m ? +m[1] : 1);
</script>
</body></html>
"""
