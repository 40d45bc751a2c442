// zfvis front end: the state of the view lives in the URL's query string.
// Data flow: URL state -> API requests -> DOM. No build step.

import { createOcclusion } from "./occlusion.js";
import { $, models, api, showError, fillTop, setSeg, uploadFile, wireUploads, layerLabel, lastConv, figureLink, loadRecent as recentList } from "./ui.js";
import { createInvariance, createCorrespondence } from "./experiments.js";
import { createDataset } from "./dataset.js";
import { createWants } from "./visualize.js";

const TILE = 64; // displayed size of a feature-map tile, px

const state = {
  model: null, snapshot: null, image: null,
  layer: 5, map: null, mode: "strongest", view: "maps", sort: "index",
  // occlusion view: square size, stride, class, live position, maps shown
  size: null, stride: null, class: null, ox: null, oy: null, maps: null,
  // invariance: steps, curves shown; correspondence: set id, seed
  steps: null, inv: null, set: null, seed: null,
  maps_sel: null, // dataset views: which maps, e.g. "0-7"
  vmaps: null, vsteps: null, vseed: null, // "wants to see": maps ("all", "0-7"), steps, seed
  want: null, // dataset top 9: with what each map wants to see (the trio)
  frame: "field", // projections: cut to the receptive field, or the full frame
};
const NUMERIC = ["snapshot", "layer", "map", "size", "stride", "class", "ox", "oy", "maps", "steps", "inv", "seed", "vsteps", "vseed", "want"];
const KEYS = ["model", "snapshot", "image", "layer", "map", "mode", "view", "sort", "size", "stride", "class", "ox", "oy", "maps", "steps", "inv", "set", "seed", "maps_sel", "frame", "vmaps", "vsteps", "vseed", "want"];
// Which keys belong to which view (others are left out of the URL).
const VIEW_KEYS = {
  occlusion: ["size", "stride", "class", "ox", "oy", "maps"],
  invariance: ["steps", "class", "inv"],
  correspondence: ["size", "set", "seed"],
  dataset: ["maps_sel", "want", "vsteps", "vseed"],
  timeline: ["maps_sel"],
  wants: ["vmaps", "vsteps", "vseed"],
};
let mapsInfo = null; // last /maps answer

function readURL() {
  const q = new URLSearchParams(location.search);
  for (const k of KEYS) {
    if (!q.has(k) || q.get(k) === "") continue;
    state[k] = NUMERIC.includes(k) ? Number(q.get(k)) : q.get(k);
  }
}

function writeURL() {
  const q = new URLSearchParams();
  const own = VIEW_KEYS[state.view] || [];
  const viewOnly = new Set(Object.values(VIEW_KEYS).flat());
  for (const k of KEYS) {
    if (viewOnly.has(k) && !own.includes(k)) continue;
    if (state[k] !== null && state[k] !== undefined) q.set(k, state[k]);
  }
  history.replaceState(null, "", "?" + q.toString());
  const c = new URLSearchParams({ b: state.model || "", eb: state.snapshot ?? "" });
  if (state.image) c.set("image", state.image);
  $("compare-link").href = `/compare?${c}`;
  const mq = new URLSearchParams({ model: state.model || "", epoch: state.snapshot ?? "" });
  if (state.image) mq.set("image", state.image);
  if (state.map !== null && state.map !== undefined) { mq.set("layer", state.layer); mq.set("map", state.map); }
  $("methods-link").href = `/methods?${mq}`;
}

const model = () => models.find((m) => m.name === state.model);
const base = () => `/api/models/${encodeURIComponent(state.model)}/snapshots/${state.snapshot}/images/${state.image}`;

function fillModels() {
  const sel = $("model");
  sel.innerHTML = "";
  for (const m of models) {
    const o = document.createElement("option");
    o.value = m.name;
    o.textContent = m.architecture === "zfnet" || m.architecture === "alexnet"
      ? `${m.name} (${m.architecture} ×${m.width})`
      : `${m.name} (${m.architecture}, ${m.layers.filter((l) => l.conv).length} conv layers${m.layers.some((l) => !l.conv) ? `, ${m.layers.length} units` : ""})`;
    sel.append(o);
  }
  // Default: the paper's network (a ZFNet), the first listed otherwise.
  if (!model() && models.length) state.model = (models.find((m) => m.name === "zfnet-woofnette") || models.find((m) => m.architecture === "zfnet") || models[0]).name;
  sel.value = state.model;
  fillSnapshots();
}

function fillSnapshots() {
  const m = model();
  const sel = $("snapshot");
  sel.innerHTML = "";
  if (!m) return;
  for (const s of m.snapshots) {
    const o = document.createElement("option");
    o.value = s.epoch;
    const acc = s.metrics && s.metrics.val_top1 != null ? ` · top-1 ${(s.metrics.val_top1 * 100).toFixed(1)}%` : "";
    o.textContent = `epoch ${s.epoch}${acc}`;
    sel.append(o);
  }
  const epochs = m.snapshots.map((s) => s.epoch);
  if (!epochs.includes(state.snapshot)) state.snapshot = epochs[epochs.length - 1];
  sel.value = state.snapshot;
  const layers = $("layers");
  layers.innerHTML = "";
  if (m.layers.length > 16) {
    // A graph network's many units: one list, grouped by block.
    const sel = document.createElement("select");
    sel.id = "layer-select";
    sel.setAttribute("aria-label", "unit");
    const groups = new Map();
    for (const l of m.layers) {
      const g = l.block || (l.conv ? "conv layers" : "units");
      if (!groups.has(g)) groups.set(g, []);
      groups.get(g).push(l);
    }
    for (const [g, ls] of groups) {
      const og = document.createElement("optgroup");
      og.label = g;
      for (const l of ls) {
        const o = document.createElement("option");
        o.value = l.layer;
        o.textContent = `${layerLabel(m, l.layer)} · ${l.maps} maps ${l.size}×${l.size}`;
        o.title = l.name;
        og.append(o);
      }
      sel.append(og);
    }
    layers.append(sel);
  } else {
    for (const l of m.layers) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.layer = l.layer;
      b.textContent = l.conv ? `conv${l.conv}` : l.short || l.name;
      if (l.conv && l.name && l.name !== `conv${l.conv}`) {
        const n = document.createElement("small");
        n.textContent = l.short || l.name;
        b.append(n);
      }
      b.title = `${l.name || `conv${l.layer}`}: ${l.maps} maps, ${l.size}×${l.size}, receptive field ${l.field} px`;
      layers.append(b);
    }
  }
  if (!m.layers.some((l) => l.layer === state.layer)) state.layer = Math.min(5, m.layers.filter((l) => l.conv).length);
  for (const el of document.querySelectorAll(".last-conv")) el.textContent = lastConv(m);
}

async function upload(file) {
  const id = await uploadFile(file);
  if (!id) return;
  state.image = id;
  state.map = null;
  await render();
  loadRecent();
}

/// The bundled example photos: a click opens one like an upload.
async function loadExamples() {
  let list = [];
  try {
    list = (await fetch("/api/examples").then((r) => r.json())).examples || [];
  } catch (_) { return; }
  const box = $("example-list");
  box.innerHTML = "";
  for (const ex of list) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "example";
    b.dataset.id = ex.id;
    b.title = `${ex.name}\n${ex.source}\nLicence: ${ex.licence}`;
    const img = document.createElement("img");
    img.src = `/api/images/${ex.id}`;
    img.alt = ex.name;
    const cap = document.createElement("span");
    cap.textContent = ex.name;
    b.append(img, cap);
    b.onclick = () => { state.image = ex.id; state.map = null; render(); };
    box.append(b);
  }
  // With --dataset: one click opens a random image of it.
  const ds = await fetch("/api/dataset").then((r) => r.json()).catch(() => ({}));
  $("random-image").hidden = ds.kind !== "folder";
  $("random-image").onclick = async () => {
    try {
      const r = await api("/api/dataset/random", { method: "POST" });
      state.image = r.id; state.map = null;
      await render();
      loadRecent();
    } catch (e) { showError(e.message); }
  };
  $("examples").hidden = list.length === 0 && ds.kind !== "folder";
  markExamples();
}

function markExamples() {
  $("examples-title").textContent = state.image ? "Examples:" : "No photo at hand? Try one of these:";
  $("examples").classList.toggle("compact", !!state.image);
  for (const b of $("example-list").querySelectorAll("button")) b.classList.toggle("current", b.dataset.id === state.image);
}

function loadRecent() {
  return recentList({
    title: "open this image",
    isCurrent: (id) => id === state.image,
    onPick: (id) => { state.image = id; state.map = null; render(); },
  });
}

function placeField(el, img, f) {
  const s = model().input_size;
  const k = 100 / s;
  el.style.left = `${f.x0 * k}%`;
  el.style.top = `${f.y0 * k}%`;
  el.style.width = `${(f.x1 - f.x0 + 1) * k}%`;
  el.style.height = `${(f.y1 - f.y0 + 1) * k}%`;
  el.hidden = false;
}

async function render() {
  writeURL();
  showError("");
  const m = model();
  if (m) figureLink($("arch-dl"), { model: state.model, snapshot: state.snapshot, figure: "fig3" });
  if (!m || !state.image) {
    markExamples();
    $("maps-panel").hidden = true;
    $("input-fig").hidden = true;
    return;
  }
  $("input-fig").hidden = false;
  $("maps-panel").hidden = false;
  const crop = `/api/models/${encodeURIComponent(state.model)}/images/${state.image}/crop.png`;
  $("crop").src = crop;
  $("crop2").src = crop;
  // A preprocessing the import guessed from the file is said, with why.
  const guessed = m.preprocess_note ? ` (${m.preprocess}, guessed from the file)` : "";
  $("crop-caption").textContent = `As the model sees it: ${m.pipeline}${guessed}`;
  $("crop-caption").title = m.preprocess_note || "";
  setSeg($("layers"), "layer", state.layer);
  if ($("layer-select")) $("layer-select").value = state.layer;
  setSeg($("views"), "view", state.view);
  setSeg($("modes"), "mode", state.mode);
  $("sort").value = state.sort;
  for (const r of $("recent").querySelectorAll("img")) r.classList.toggle("current", r.dataset.id === state.image);
  markExamples();
  try {
    const view = { top9: renderTop9, occlusion: renderOcclusion, invariance: renderInvariance, correspondence: renderCorrespondence, dataset: renderDataset, timeline: renderDataset, wants: renderWants }[state.view] || renderMaps;
    await Promise.all([renderTop5(), view()]);
  } catch (e) {
    showError(e.message);
  }
}

async function renderTop5() {
  const r = await api(`${base()}/predictions`);
  fillTop($("top5"), r.top);
  renderKnows();
}

// What the model can answer: every image is read as one of its classes (a
// cat, for a model of dog breeds, is some dog breed).
function renderKnows() {
  const el = $("knows"), names = (model() && model().class_names) || [];
  el.hidden = names.length === 0;
  const list = names.length <= 30 ? `: ${names.join(", ")}` : " (hover to list them)";
  el.textContent = `This model knows ${names.length} classes${list}. It reads every image as one of them.`;
  el.title = names.join(", ");
}

function orderedMaps() {
  const list = mapsInfo ? [...mapsInfo.maps] : [];
  if (state.sort === "peak") list.sort((a, b) => b.peak - a.peak || a.map - b.map);
  return list;
}

const PANES = ["grid", "top9", "detail", "occlusion", "invariance", "correspondence", "dataset", "wants"];
function showPane(id, withLayers) {
  for (const p of PANES) $(p).hidden = p !== id;
  $("layers").hidden = !withLayers;
  $("sort-label").hidden = id !== "grid";
  $("top9-frames").hidden = id !== "top9";
}

let dataset = null;
async function renderDataset() {
  showPane("dataset", true);
  dataset = dataset || createDataset({ state, model, render, writeURL, showError });
  await dataset.render();
}

let wants = null;
async function renderWants() {
  showPane("wants", true);
  // A picture opens its map's trio: the dataset top 9 with this image beside.
  const openMap = (k) => { Object.assign(state, { view: "dataset", maps_sel: String(k), want: 1 }); render(); };
  wants = wants || createWants({ state, model, writeURL, showError, openMap });
  await wants.render();
}

let invariance = null;
async function renderInvariance() {
  showPane("invariance", false);
  invariance = invariance || createInvariance({ state, model, base, api, writeURL, showError });
  await invariance.render();
}

let correspondence = null;
async function renderCorrespondence() {
  showPane("correspondence", false);
  correspondence = correspondence || createCorrespondence({ state, model, api, writeURL, showError });
  await correspondence.render();
}

let occlusion = null;
async function renderOcclusion() {
  showPane("occlusion", false);
  occlusion = occlusion || createOcclusion({ state, model, base, api, writeURL, showError });
  await occlusion.render();
}

async function renderMaps() {
  showPane("grid", true);
  const url = `${base()}/layers/${state.layer}/maps`;
  mapsInfo = await api(url);
  const grid = $("grid");
  grid.innerHTML = "";
  const rows = Math.ceil(mapsInfo.maps.length / mapsInfo.cols);
  for (const mi of orderedMaps()) {
    const t = document.createElement("button");
    t.type = "button";
    t.className = "tile";
    t.dataset.map = mi.map;
    const col = mi.map % mapsInfo.cols, row = Math.floor(mi.map / mapsInfo.cols);
    const pic = document.createElement("span");
    pic.className = "pic";
    pic.style.backgroundImage = `url(${url}.png)`;
    pic.style.backgroundSize = `${mapsInfo.cols * TILE}px ${rows * TILE}px`;
    pic.style.backgroundPosition = `-${col * TILE}px -${row * TILE}px`;
    if (mapsInfo.size < TILE) pic.classList.add("pixelated");
    const cap = document.createElement("span");
    cap.className = "cap";
    cap.textContent = `#${mi.map} · ${mi.peak.toFixed(2)}`;
    t.title = `map ${mi.map}, peak ${mi.peak.toFixed(3)} at (${mi.y}, ${mi.x})`;
    t.append(pic, cap);
    t.onclick = () => selectMap(mi.map);
    grid.append(t);
  }
  const maxMap = mapsInfo.maps.length - 1;
  if (state.map !== null && state.map > maxMap) state.map = null;
  await renderDetail();
}

async function renderDetail() {
  for (const t of $("grid").querySelectorAll(".tile")) t.classList.toggle("on", Number(t.dataset.map) === state.map);
  if (state.map === null || state.view !== "maps") {
    $("detail").hidden = true;
    $("field").hidden = true;
    return;
  }
  $("detail").hidden = false;
  const url = `${base()}/layers/${state.layer}/maps/${state.map}/projection?mode=${state.mode}`;
  const r = await api(url);
  const img = $("projection");
  img.src = url.replace("/projection?", "/projection.png?");
  const epochs = model().snapshots.map((s) => s.epoch);
  $("evolution").src = `/api/models/${encodeURIComponent(state.model)}/images/${state.image}/layers/${state.layer}/maps/${state.map}/evolution.png`;
  $("evolution-cap").textContent = `This map's projection at every snapshot: epochs ${epochs.join(", ")}`;
  $("evolution").style.maxWidth = `${epochs.length * 128}px`; // a short row stays small
  placeField($("field2"), $("crop2"), r.field);
  placeField($("field"), $("crop"), r.field);
  $("proj-caption").textContent =
    `${layerLabel(model(), state.layer)} map ${r.map}: ${r.mode === "all" ? "all activations" : "strongest activation"} ` +
    `${r.value.toFixed(3)} at (${r.y}, ${r.x})` +
    (model().projection_note ? `. ${model().projection_note}` : "");
  showFrame(r);
  writeURL();
}

let lastField = null; // the projection answer the patches show

/// The projection as the paper draws it (Fig. 2): the receptive field of
/// the kept activation cut from the input and from the reconstruction,
/// the latter stretched to its own contrast (symmetric around grey); or the
/// full frame.
async function showFrame(r) {
  if (r) lastField = r;
  const full = state.frame === "full";
  setSeg($("frames"), "frame", full ? "full" : "field");
  $("full-pair").hidden = !full;
  $("field-pair").hidden = full;
  if (full || !lastField) return;
  const f = lastField.field;
  const w = f.x1 - f.x0 + 1, h = f.y1 - f.y0 + 1;
  const src = $("projection");
  await Promise.all([src.decode(), $("crop2").decode()]).catch(() => {});
  if (lastField !== r && r) return;
  const S = model().input_size;
  const kx = (src.naturalWidth || S) / S;
  const cut = (img, k) => {
    const c = document.createElement("canvas");
    c.width = w; c.height = h;
    c.getContext("2d").drawImage(img, f.x0 * k, f.y0 * k, w * k, h * k, 0, 0, w, h);
    return c;
  };
  const put = (canvas, from) => {
    const g = canvas.getContext("2d");
    g.imageSmoothingEnabled = w < canvas.width / 2;
    g.clearRect(0, 0, canvas.width, canvas.height);
    const side = Math.max(w, h), s = canvas.width / side;
    g.drawImage(from, (canvas.width - w * s) / 2, (canvas.height - h * s) / 2, w * s, h * s);
  };
  const input = cut($("crop2"), ($("crop2").naturalWidth || S) / S);
  const proj = cut(src, kx);
  const g = proj.getContext("2d");
  const d = g.getImageData(0, 0, w, h);
  let dev = 0;
  for (let i = 0; i < d.data.length; i += 4) for (let k = 0; k < 3; k++) dev = Math.max(dev, Math.abs(d.data[i + k] - 128));
  const gain = dev > 0 ? 127 / dev : 1;
  for (let i = 0; i < d.data.length; i += 4) for (let k = 0; k < 3; k++) d.data[i + k] = Math.round(128 + (d.data[i + k] - 128) * gain);
  g.putImageData(d, 0, 0);
  put($("patch-in"), input);
  put($("patch-proj"), proj);
  $("patch-in-cap").textContent = `Input patch: the receptive field, ${w}×${h} px at (${f.x0}, ${f.y0})`;
  $("patch-proj-cap").textContent = `${$("proj-caption").textContent}; own contrast ×${gain.toFixed(1)}`;
}

async function renderTop9() {
  showPane("top9", true);
  setSeg($("top9-frames"), "frame", state.frame === "full" ? "full" : "field");
  const box = $("top9");
  const q = `?frame=${state.frame === "full" ? "full" : "field"}`;
  const url = `${base()}/layers/${state.layer}/top9`;
  const r = await api(url + q);
  box.innerHTML = "";
  r.items.forEach((it, i) => {
    const f = document.createElement("figure");
    const pic = document.createElement("span");
    pic.className = "pic9";
    pic.style.backgroundImage = `url(${url}.png${q})`;
    pic.style.backgroundPosition = `${(i % 3) * 50}% ${Math.floor(i / 3) * 50}%`;
    const cap = document.createElement("figcaption");
    const f0 = it.field;
    cap.textContent = `map ${it.map} · ${it.value.toFixed(2)}` + (q.includes("field") ? ` · field ${f0.x1 - f0.x0 + 1} px` : "");
    f.append(pic, cap);
    f.title = "open this map";
    f.onclick = () => { state.view = "maps"; selectMap(it.map, true); };
    box.append(f);
  });
}

function selectMap(map, rerender) {
  state.map = map;
  writeURL();
  if (rerender) render(); else renderDetail().catch((e) => showError(e.message));
}

function moveSelection(key) {
  if (!mapsInfo || state.view !== "maps") return false;
  const order = orderedMaps().map((m) => m.map);
  const grid = $("grid");
  const perRow = Math.max(1, Math.round(grid.clientWidth / (grid.firstChild ? grid.firstChild.offsetWidth + 6 : TILE)));
  let i = state.map === null ? -1 : order.indexOf(state.map);
  const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -perRow, ArrowDown: perRow }[key];
  if (step === undefined) return false;
  i = i < 0 ? 0 : Math.min(order.length - 1, Math.max(0, i + step));
  selectMap(order[i]);
  const el = grid.querySelector(`[data-map="${order[i]}"]`);
  if (el) el.scrollIntoView({ block: "nearest" });
  return true;
}

function wire() {
  $("model").onchange = (e) => { state.model = e.target.value; state.map = null; fillSnapshots(); render(); };
  $("snapshot").onchange = (e) => { state.snapshot = Number(e.target.value); render(); };
  $("layers").onchange = (e) => {
    if (e.target.id !== "layer-select") return;
    state.layer = Number(e.target.value);
    state.map = null;
    render();
  };
  $("layers").onclick = (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    state.layer = Number(b.dataset.layer);
    state.map = null;
    render();
  };
  $("views").onclick = (e) => {
    const b = e.target.closest("button");
    if (b) { state.view = b.dataset.view; render(); }
  };
  $("modes").onclick = (e) => {
    const b = e.target.closest("button");
    if (b) { state.mode = b.dataset.mode; setSeg($("modes"), "mode", state.mode); renderDetail().catch((x) => showError(x.message)); }
  };
  $("sort").onchange = (e) => { state.sort = e.target.value; render(); };
  $("frames").onclick = (e) => {
    const b = e.target.closest("button");
    if (b) { state.frame = b.dataset.frame; writeURL(); showFrame(); }
  };
  $("top9-frames").onclick = (e) => {
    const b = e.target.closest("button");
    if (b) { state.frame = b.dataset.frame; writeURL(); renderTop9().catch((x) => showError(x.message)); }
  };
  wireUploads(upload);
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "SELECT" || e.target.tagName === "INPUT") return;
    if (moveSelection(e.key)) e.preventDefault();
  });
}

readURL();
fillModels();
wire();
render();
loadRecent();
loadExamples();
