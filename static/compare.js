// zfvis compare view (paper Fig. 6): two models or snapshots side by side.
// State in the URL: a, ea, b, eb (models, epochs), norm, image (ids, comma-separated).

import { $, models, api, esc, showError, uploadFile, wireUploads, figureLink, jobResult, jobStatus, loadRecent as recentList } from "./ui.js";

const state = { a: null, ea: null, b: null, eb: null, norm: "layer", image: [] };
let generation = 0;

function readURL() {
  const q = new URLSearchParams(location.search);
  for (const k of ["a", "b", "norm"]) if (q.get(k)) state[k] = q.get(k);
  for (const k of ["ea", "eb"]) if (q.get(k)) state[k] = Number(q.get(k));
  if (q.get("image")) state.image = q.get("image").split(",").filter((s) => /^[0-9a-f]{64}$/.test(s));
}

function writeURL() {
  const q = new URLSearchParams();
  for (const k of ["a", "ea", "b", "eb", "norm"]) if (state[k] !== null) q.set(k, state[k]);
  if (state.image.length) q.set("image", state.image.join(","));
  history.replaceState(null, "", "?" + q.toString());
  const first = state.image[0];
  $("back").href = `/?model=${encodeURIComponent(state.a)}&snapshot=${state.ea}` + (first ? `&image=${first}` : "");
}

const find = (name) => models.find((m) => m.name === name);
const enc = encodeURIComponent;

function defaults(first) {
  if (!find(state.a)) {
    // Prefer an AlexNet, and a model other than B.
    const other = models.filter((m) => m.name !== state.b);
    const alex = other.find((m) => m.architecture === "alexnet");
    state.a = (alex || other[0] || models[0] || {}).name || null;
  }
  if (!find(state.b)) {
    const zf = models.find((m) => m.name === "zfnet-woofnette") || models.find((m) => m.name !== state.a);
    state.b = (zf || models[0] || {}).name || null;
  }
  for (const [m, e] of [["a", "ea"], ["b", "eb"]]) {
    const epochs = (find(state[m]) || { snapshots: [] }).snapshots.map((s) => s.epoch);
    if (!epochs.includes(state[e])) state[e] = epochs.length ? epochs[epochs.length - 1] : null;
  }
  // One model only, nothing chosen: compare its first snapshot with its last.
  if (first && state.a === state.b && state.ea === state.eb) {
    const s = (find(state.a) || { snapshots: [] }).snapshots;
    if (s.length > 1) state.ea = s[0].epoch;
  }
}

function fillSelects() {
  for (const [m, e] of [["a", "ea"], ["b", "eb"]]) {
    const ms = $(`model-${m}`);
    ms.innerHTML = "";
    for (const x of models) {
      const o = document.createElement("option");
      o.value = x.name;
      o.textContent = `${x.name} (${x.architecture})`;
      ms.append(o);
    }
    ms.value = state[m];
    const ss = $(`snap-${m}`);
    ss.innerHTML = "";
    for (const s of (find(state[m]) || { snapshots: [] }).snapshots) {
      const o = document.createElement("option");
      o.value = s.epoch;
      const acc = s.metrics && s.metrics.val_top1 != null ? ` · ${(s.metrics.val_top1 * 100).toFixed(1)}%` : "";
      o.textContent = `${s.epoch}${acc}`;
      ss.append(o);
    }
    ss.value = state[e];
  }
  for (const b of $("norm").querySelectorAll("button")) b.classList.toggle("on", b.dataset.norm === state.norm);
}

const label = (m, e) => `${state[m]} @ ${state[e]}`;

// ---- layer 1 filters ------------------------------------------------------

function overlay(side, info, dead) {
  const box = $(`filters-${side}`);
  for (const el of box.querySelectorAll(".dead, .hit")) el.remove();
  const cols = info.cols, t = info.tile + 1, n = info.filters.length;
  const w = cols * t + 1, h = Math.ceil(n / cols) * t + 1;
  info.filters.forEach((f, i) => {
    const x = (i % cols) * t + 1, y = Math.floor(i / cols) * t + 1;
    const place = (el) => {
      el.style.left = `${(x / w) * 100}%`;
      el.style.top = `${(y / h) * 100}%`;
      el.style.width = `${(info.tile / w) * 100}%`;
      el.style.height = `${(info.tile / h) * 100}%`;
      box.append(el);
    };
    const hit = document.createElement("div");
    hit.className = "hit";
    hit.title = `filter ${f.filter}, RMS ${f.rms.toFixed(4)}${dead.has(f.filter) ? " (dead)" : ""}`;
    place(hit);
    if (dead.has(f.filter)) {
      const d = document.createElement("div");
      d.className = "dead";
      place(d);
    }
  });
}

const filterInfo = {};

async function renderFilters(gen) {
  figureLink($("fig6-dl"), { model: state.a, snapshot: state.ea, figure: "fig6", compare: state.b, compare_epoch: state.eb, image: state.image[0] });
  await Promise.all(["a", "b"].map(async (side) => {
    const m = state[side], e = state[`e${side}`];
    const url = `/api/models/${enc(m)}/snapshots/${e}/filters?norm=${state.norm}`;
    $(`filters-${side}-img`).src = url.replace("/filters?", "/filters.png?");
    const info = await api(url);
    if (gen !== generation) return;
    filterInfo[side] = info;
    overlay(side, info, new Set(info.filters.filter((f) => f.dead).map((f) => f.filter)));
    const rms = info.filters.map((f) => f.rms);
    $(`filters-${side}-cap`).textContent =
      `${label(side, `e${side}`)}: ${info.filters.length} filters ${info.kernel}×${info.kernel}, stride ${info.stride}; ` +
      `RMS ${Math.min(...rms).toFixed(3)}–${Math.max(...rms).toFixed(3)}`;
  }));
}

// ---- numbers ----------------------------------------------------------------

const fmt = (v, d = 3) => (v === null || v === undefined ? "–" : v.toFixed(d));

function bandBar(b) {
  const pct = (v) => `${(v * 100).toFixed(1)}%`;
  return `<span class="band" title="low ${pct(b.low)}, mid ${pct(b.mid)}, high ${pct(b.high)}"><i class="low" style="width:${pct(b.low)}"></i><i class="mid" style="width:${pct(b.mid)}"></i><i class="high" style="width:${pct(b.high)}"></i></span>`;
}

function table(r) {
  const rows = [
    ["", (s) => `<b>${esc(s.model)}</b> epoch ${s.epoch}`],
    ["conv1", (s) => `${s.conv1.filters} × ${s.conv1.kernel}×${s.conv1.kernel}, stride ${s.conv1.stride}`],
    ["dead filters", (s) => `<b>${s.dead_count}</b> / ${s.conv1.filters}`],
    ["  which", (s) => (s.dead_filters.length ? s.dead_filters.join(", ") : "none"), "list"],
    ["  never active", (s) => (s.never_active ? (s.never_active.length ? s.never_active.join(", ") : "none") : "–"), "list"],
    ["band energy low / mid / high", (s) => `${bandBar(s.band_energy)} ${fmt(s.band_energy.low)} / ${fmt(s.band_energy.mid)} / ${fmt(s.band_energy.high)}`, "cell-band"],
    ["aliasing (above own Nyquist)", (s) => `<b>${fmt(s.aliasing)}</b> <span class="muted">above ${fmt(s.nyquist, 4)} c/px</span>`],
    ["energy above 1/8 c/px", (s) => fmt(s.aliasing_common)],
  ];
  let h = `<table class="cmp-numbers"><thead><tr><th></th><th>A</th><th>B</th></tr></thead><tbody>`;
  for (const [name, f, cls] of rows) {
    h += `<tr><td>${esc(name)}</td><td class="${cls || ""}">${f(r.a)}</td><td class="${cls || ""}">${f(r.b)}</td></tr>`;
  }
  return h + "</tbody></table>";
}

let cancelUrl = null;
$("cmp-cancel").addEventListener("click", () => {
  if (cancelUrl) fetch(cancelUrl, { method: "DELETE" });
});

async function renderNumbers(gen) {
  const q = `a=${enc(state.a)}&ea=${state.ea}&b=${enc(state.b)}&eb=${state.eb}`;
  $("cmp-table").innerHTML = "";
  $("cmp-source").textContent = "";
  $("cmp-progress").hidden = false;
  $("cmp-bar").removeAttribute("value");
  $("cmp-count").textContent = "";
  $("cmp-eta").textContent = "";
  const show = (p, url) => {
    if (gen !== generation) return;
    cancelUrl = url;
    if (p.state === "running" && p.total) {
      $("cmp-bar").max = p.total;
      $("cmp-bar").value = p.done;
      $("cmp-count").textContent = `${p.done} / ${p.total} image passes`;
    }
    $("cmp-eta").textContent = jobStatus(p);
  };
  try {
    const r = await jobResult(`/api/compare?${q}`, show, () => gen === generation);
    if (gen !== generation) return;
    $("cmp-table").innerHTML = table(r);
    $("cmp-source").textContent = `Measured on ${r.method.image_source}.`;
    for (const side of ["a", "b"]) {
      if (filterInfo[side]) overlay(side, filterInfo[side], new Set(r[side].dead_filters));
    }
  } catch (e) {
    if (e.superseded) return;
    if (e.cancelled) {
      $("cmp-source").textContent = "Cancelled.";
      return;
    }
    throw e;
  } finally {
    if (gen === generation) {
      $("cmp-progress").hidden = true;
      cancelUrl = null;
    }
  }
}

// ---- layer 2 projections ------------------------------------------------------

// The 9 projections of one image cut to their receptive fields, 3 x 3.
async function patches(el, m, e, id, name) {
  const url = `/api/models/${enc(m)}/snapshots/${e}/images/${id}/layers/2/top9`;
  try {
    const r = await api(url);
    const S = r.tile;
    for (const [i, it] of r.items.entries()) {
      const f = it.field;
      const side = Math.max(f.x1 - f.x0 + 1, f.y1 - f.y0 + 1);
      const cell = document.createElement("span");
      cell.className = "patch";
      cell.title = `${name}: layer 2 map ${it.map}, activation ${it.value.toFixed(2)}`;
      el.append(cell);
      const k = cell.clientWidth / side || 1;
      const tx = (i % 3) * S + f.x0, ty = Math.floor(i / 3) * S + f.y0;
      cell.style.backgroundImage = `url("${url}.png")`;
      cell.style.backgroundSize = `${3 * S * k}px ${Math.ceil(r.items.length / 3) * S * k}px`;
      cell.style.backgroundPosition = `${-tx * k}px ${-ty * k}px`;
    }
  } catch (err) {
    el.textContent = `${name}: ${err.message}`;
  }
}

function renderRows() {
  const rows = $("rows");
  rows.innerHTML = "";
  $("no-images").hidden = state.image.length > 0;
  if (!state.image.length) return;
  const head = document.createElement("div");
  head.className = "cmp-row head";
  head.innerHTML = `<span>Image</span><span></span><span></span>`;
  head.children[1].textContent = `A: ${label("a", "ea")}`;
  head.children[2].textContent = `B: ${label("b", "eb")}`;
  rows.append(head);
  for (const id of state.image) {
    const row = document.createElement("div");
    row.className = "cmp-row";
    const img = document.createElement("img");
    img.src = `/api/models/${enc(state.a)}/images/${id}/crop.png`;
    img.alt = "input";
    const ga = document.createElement("div"), gb = document.createElement("div");
    ga.className = gb.className = "patches";
    row.append(img, ga, gb);
    rows.append(row);
    patches(ga, state.a, state.ea, id, "A");
    patches(gb, state.b, state.eb, id, "B");
  }
}

function loadRecent() {
  return recentList({
    title: "show or hide this image",
    isCurrent: (id) => state.image.includes(id),
    onPick: (id, img) => {
      state.image = state.image.includes(id) ? state.image.filter((x) => x !== id) : [...state.image, id];
      img.classList.toggle("current", state.image.includes(id));
      writeURL();
      renderRows();
    },
  });
}

async function upload(file) {
  const id = await uploadFile(file);
  if (!id) return;
  if (!state.image.includes(id)) state.image.push(id);
  writeURL();
  renderRows();
  loadRecent();
}

// ---- wiring -------------------------------------------------------------------

async function render(first = false) {
  defaults(first);
  fillSelects();
  writeURL();
  showError("");
  if (!state.a || !state.b) {
    showError("No models found. Start the server with --models DIR.");
    return;
  }
  const gen = ++generation;
  // Pictures first: they share the compute worker; the numbers run beside it.
  renderRows();
  try {
    await Promise.all([renderFilters(gen), renderNumbers(gen)]);
  } catch (e) {
    if (gen === generation) showError(e.message);
  }
}

for (const [m, e] of [["a", "ea"], ["b", "eb"]]) {
  $(`model-${m}`).onchange = (ev) => { state[m] = ev.target.value; state[e] = null; render(); };
  $(`snap-${m}`).onchange = (ev) => { state[e] = Number(ev.target.value); render(); };
}
$("swap").onclick = () => {
  [state.a, state.b, state.ea, state.eb] = [state.b, state.a, state.eb, state.ea];
  render();
};
$("norm").onclick = (ev) => {
  const b = ev.target.closest("button");
  if (!b) return;
  state.norm = b.dataset.norm;
  fillSelects();
  writeURL();
  renderFilters(generation).catch((e) => showError(e.message));
};
wireUploads(upload);

readURL();
render(true);
loadRecent();
