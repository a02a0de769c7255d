// The hashidx search page: the archive's scenes as the map (no outside tiles), searches by place, item and image,
// matches drawn on the map and listed with thumbnails. Every request goes to this server only.
"use strict";

const state = { map: null, drawn: null, lastQuery: null, writable: false, marks: new Map() };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

async function api(path, options) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "err" : "";
}

function show(payload, what) {
  const hits = payload.queries.flatMap((q) => q.results);
  status(`${hits.length} matches for ${what}`);
  document.body.dataset.results = String(hits.length);
  const list = $("results");
  list.replaceChildren();
  if (state.drawn) state.drawn.remove();
  const features = [];
  for (const r of hits) {
    const where = r.window ? `${r.path.split("#")[0]} at ${r.window[0]},${r.window[1]}` : r.path;
    const score = r.score === null ? "" : `, score ${Number(r.score.toPrecision(3))}`;
    const button = el("button", { class: r.footprint ? "hit on-map" : "hit", type: "button", "data-id": r.id,
                                  title: "show it on the map; double-click: more like this" },
      el("img", { src: `/items/${r.id}/thumbnail?size=96`, alt: where }),
      el("span", { class: "meta" }, el("b", {}, `#${r.rank} · distance ${r.distance}${score}`),
         where, el("br"), r.label || ""));
    button.addEventListener("click", () => focusItem(r));
    button.addEventListener("dblclick", () => searchItems([r.id]));
    button.addEventListener("keydown", (e) => {
      if (e.key === "m") searchItems([r.id]);
      if (state.writable && (e.key === "y" || e.key === "+")) mark(r.id, "+", e.currentTarget);
      if (state.writable && (e.key === "n" || e.key === "-")) mark(r.id, "-", e.currentTarget);
    });
    const item = el("li", {}, button);
    if (state.writable) {  // right or wrong, one click (or y / n on the focused match)
      item.append(el("span", { class: "verdict" },
        el("button", { type: "button", class: "yes", title: "right (y)", "aria-label": `mark #${r.rank} right`,
                       onclick: () => mark(r.id, "+", button) }, "✓"),
        el("button", { type: "button", class: "no", title: "wrong (n)", "aria-label": `mark #${r.rank} wrong`,
                       onclick: () => mark(r.id, "-", button) }, "✗")));
      const known = state.marks.get(`${concept()}\t${r.id}`);
      if (known) button.classList.add(known === "+" ? "marked-yes" : "marked-no");
    }
    list.append(item);
    if (r.footprint) features.push({ type: "Feature", geometry: r.footprint, properties: r });
  }
  if (state.map && features.length) {
    state.drawn = L.geoJSON({ type: "FeatureCollection", features }, {
      style: { color: "#ffea00", weight: 2, fillOpacity: 0.1, className: "match" },
      onEachFeature: (f, layer) => layer.bindTooltip(`#${f.properties.rank} d=${f.properties.distance}`),
    }).addTo(state.map);
  }
  $("export").disabled = !state.lastQuery;
}

function focusItem(r) {
  if (state.map && r.footprint) {
    const ring = r.footprint.coordinates[0].map(([lon, lat]) => [lat, lon]);
    state.map.flyToBounds(L.latLngBounds(ring), { maxZoom: 18 });
  }
}

async function searchItems(positive, negative) {
  status("searching…");
  state.lastQuery = { positive, negative: negative || [], k: 20 };
  try {
    show(await api("/search/items", { method: "POST", headers: { "Content-Type": "application/json" },
                                       body: JSON.stringify(state.lastQuery) }), `item ${positive.join(", ")}`);
  } catch (e) { status(e.message, true); }
}

async function searchPoint(latlng) {
  status("searching…");
  try {
    const payload = await api(`/search/point?lon=${latlng.lng.toFixed(7)}&lat=${latlng.lat.toFixed(7)}&k=20`);
    state.lastQuery = { positive: [payload.item.id], negative: [], k: 20 };
    show(payload, `the chip at ${latlng.lat.toFixed(5)}, ${latlng.lng.toFixed(5)}`);
  } catch (e) { status(e.message, true); }
}

async function searchImage(file) {
  status(`searching with ${file.name}…`);
  state.lastQuery = null;
  try {
    const form = new FormData();
    form.append("file", file);
    show(await api("/search/image?k=20", { method: "POST", body: form }), file.name);
  } catch (e) { status(e.message, true); }
}

const concept = () => $("concept").value.trim() || "concept";

async function mark(id, verdict, button) {
  try {
    await api("/marks", { method: "POST", headers: { "Content-Type": "application/json" },
                          body: JSON.stringify({ marks: [{ item: id, concept: concept(), mark: verdict }] }) });
    state.marks.set(`${concept()}\t${id}`, verdict);
    button.classList.remove("marked-yes", "marked-no");
    button.classList.add(verdict === "+" ? "marked-yes" : "marked-no");
    const n = [...state.marks.keys()].filter((k) => k.startsWith(`${concept()}\t`)).length;
    status(`${n} marks for ${concept()}`);
    document.body.dataset.marks = String(n);
  } catch (e) { status(e.message, true); }
}

async function markBox(bounds) {
  try {
    const done = await api("/marks", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ box: [bounds.getWest(), bounds.getSouth(), bounds.getEast(), bounds.getNorth()],
                             concept: concept(), mark: "+" }) });
    for (const m of (await api("/marks")).marks) state.marks.set(`${m.concept}\t${m.item}`, m.mark);
    const n = [...state.marks.keys()].filter((k) => k.startsWith(`${concept()}\t`)).length;
    status(`${done.added} chips in the box marked right for ${concept()}; ${n} marks`);
    document.body.dataset.marks = String(n);
  } catch (e) { status(e.message, true); }
}

function marked(verdict) {
  return [...state.marks].filter(([k, v]) => k.startsWith(`${concept()}\t`) && v === verdict)
    .map(([k]) => Number(k.split("\t")[1]));
}

async function searchMarked() {
  const positive = marked("+");
  if (!positive.length) { status(`mark at least one match right for ${concept()}`, true); return; }
  await searchItems(positive, marked("-"));
}

// Learn (a new model from the marks) or undo (the model before): either way the answer names the model now in
// use, and the concept's marked examples are searched again with it.
async function switchModel(path, button) {
  if (button) button.disabled = true;
  try {
    const now = await api(path, { method: "POST" });
    $("version").textContent = `model ${now.version}`;
    document.body.dataset.version = now.version;
    await searchMarked();
  } catch (e) { status(e.message, true); }
  if (button) button.disabled = false;
}

const learnMarks = () => { status("learning…"); return switchModel("/learn", $("learn")); };
const undoLearn = () => switchModel("/undo");

async function exportMatches() {
  if (!state.lastQuery) return;
  const response = await fetch("/export/geojson", { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify(state.lastQuery) });
  const url = URL.createObjectURL(await response.blob());
  const a = el("a", { href: url, download: "hashidx-results.geojson" });
  document.body.append(a);
  a.click();
  a.remove();
  URL.revokeObjectURL(url);
}

// Each chip of a scene, invisible until the pointer is over it: then its outline and its window show.
async function outlineChips(sceneId) {
  const chips = await api(`/scenes/${sceneId}/items`);
  const hidden = { color: "#e0f2f1", weight: 1, opacity: 0, fillOpacity: 0 };
  L.geoJSON(chips, {
    style: () => ({ ...hidden, className: "chip" }),
    onEachFeature: (f, layer) => {
      layer.bindTooltip(`${f.properties.path} (id ${f.properties.id})`, { sticky: true });
      layer.on("mouseover", () => layer.setStyle({ opacity: 1, fillOpacity: 0.05 }));
      layer.on("mouseout", () => layer.setStyle(hidden));
    },
  }).addTo(state.map);
}

async function start() {
  const info = await api("/info");
  $("info").textContent = `${info.items.toLocaleString()} items, ${info.scenes} scenes, ` +
    `${info.index.bits}-bit ${info.index.method || ""} codes`;
  const scenes = await api("/scenes");
  if (scenes.features.length) {
    state.map = L.map("map", { attributionControl: false });
    window.hashidxMap = state.map;  // for scripts and tests driving the page
    const all = [];
    for (const f of scenes.features) {
      const [[w, s], , [e, n]] = f.geometry.coordinates[0];
      const bounds = L.latLngBounds([s, w], [n, e]);
      all.push(bounds);
      L.tileLayer(f.properties.tiles, { bounds, maxZoom: 20, maxNativeZoom: 18 }).addTo(state.map);
      L.geoJSON(f, { style: { color: "#80cbc4", weight: 1, fill: false }, interactive: false }).addTo(state.map);
      if (f.properties.items <= 5000) outlineChips(f.properties.id);
    }
    state.map.fitBounds(all.reduce((a, b) => a.extend(b)));
    state.map.on("click", (e) => searchPoint(e.latlng));
    document.body.dataset.scenes = String(scenes.features.length);
  } else {  // an archive without geography: its items as a gallery to search from
    $("map").hidden = true;
    $("gallery").hidden = false;
    const page = await api("/items?limit=120");
    for (const item of page.items) {
      $("gallery").append(el("button", { type: "button", title: `${item.path} (${item.label || "no label"})`,
                                         onclick: () => searchItems([item.id]) },
        el("img", { src: `/items/${item.id}/thumbnail?size=96`, alt: item.path })));
    }
    document.body.dataset.scenes = "0";
  }
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) searchImage(e.dataTransfer.files[0]);
  });
  $("file").addEventListener("change", (e) => { if (e.target.files.length) searchImage(e.target.files[0]); });
  $("export").addEventListener("click", exportMatches);
  if (info.learning) {  // started with --learn-dir: marks, learn and undo
    state.writable = true;
    for (const m of (await api("/marks")).marks) state.marks.set(`${m.concept}\t${m.item}`, m.mark);
    $("learning").hidden = false;
    $("version").textContent = `model ${info.learning.version}`;
    if (info.learning.concepts.length) $("concept").value = info.learning.concepts.at(-1);
    $("again").addEventListener("click", searchMarked);
    // Shift-drag a box (Leaflet's box zoom): every chip whose centre is inside it is marked right
    if (state.map) state.map.on("boxzoomend", (e) => markBox(e.boxZoomBounds));
    $("learn").addEventListener("click", learnMarks);
    $("undo").addEventListener("click", undoLearn);
  }
  document.body.dataset.ready = "1";
}

start().catch((e) => status(e.message, true));
