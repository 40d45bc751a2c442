// zfvis methods view (paper.md §8): the deconvnet beside guided backprop, the
// gradient, the CAM family, guided Grad-CAM, integrated gradients and occlusion, for
// one image and one class (or one map), with deletion/insertion curves and the
// sanity check; the CAM family, SmoothGrad, and every map over the image.
// State in the URL: model, epoch, image, class, layer, map, smooth, noise,
// squared, fusion, discard (attention rollout), overlay, seed, steps.

import { $, models, esc, showError, jobResult, jobStatus, uploadFile, wireUploads, loadRecent } from "./ui.js";

const state = { model: null, epoch: null, image: null, class: "", layer: "", map: "", smooth: "", noise: "", squared: "", overlay: "", seed: "0", steps: "", fusion: "", discard: "" };
const INPUTS = ["class", "layer", "map", "smooth", "noise", "seed", "steps", "fusion", "discard"];
const ASKED = ["class", "layer", "map", "smooth", "noise", "squared", "fusion", "discard"];
const find = (name) => models.find((m) => m.name === name);
// The method registry (GET /api/methods/list), embedded by the page.
const METHODS = JSON.parse(($("methods-data") || {}).textContent || "[]");
const COLORS = Object.fromEntries(METHODS.map((m) => [m.name, m.colour]));
let generation = 0, last = null;

function readURL() {
  const q = new URLSearchParams(location.search);
  for (const k of Object.keys(state)) if (q.get(k) !== null) state[k] = q.get(k);
  if (state.epoch !== null && state.epoch !== "") state.epoch = Number(state.epoch);
}

function query(keys) {
  const q = new URLSearchParams();
  q.set("model", state.model);
  q.set("epoch", state.epoch);
  if (state.image) q.set("image", state.image);
  for (const k of keys) if (state[k] !== "" && state[k] !== null) q.set(k, state[k]);
  return q;
}

function writeURL() {
  history.replaceState(null, "", "?" + query([...ASKED, "overlay", "seed", "steps"]).toString());
}

function fill() {
  if (!find(state.model)) state.model = (models.find((m) => m.name === "zfnet-woofnette") || models[0] || {}).name || null;
  const snaps = (find(state.model) || { snapshots: [] }).snapshots;
  if (!snaps.some((s) => s.epoch === state.epoch)) state.epoch = snaps.length ? snaps[snaps.length - 1].epoch : null;
  $("model").innerHTML = models.map((m) => `<option value="${esc(m.name)}">${esc(m.name)} (${esc(m.architecture)})</option>`).join("");
  $("model").value = state.model;
  $("snap").innerHTML = snaps.map((s) => `<option value="${s.epoch}">${s.epoch}</option>`).join("");
  $("snap").value = state.epoch;
  fillLayers(find(state.model));
  // Attention rollout's settings, for networks with self-attention.
  $("rollout-opts").hidden = !(find(state.model) || {}).attention;
  for (const k of INPUTS) $(k).value = state[k];
  $("squared").checked = state.squared === "true";
  $("overlay-on").checked = state.overlay !== "";
  if (state.overlay !== "") $("overlay").value = state.overlay;
}

// The units with maps, by depth; the default is the suggested one (the
// last with maps before global pooling), named in its option.
function fillLayers(m) {
  if (!m) return;
  const units = m.layers.filter((l) => l.spatial).sort((a, b) => a.depth - b.depth);
  const last = m.layers.find((l) => l.layer === m.last_unit);
  const opts = [`<option value="">suggested: ${esc(last ? last.short : "last")}</option>`]
    .concat(units.map((l) => `<option value="${l.layer}">${esc(l.short)} · ${l.maps} maps of ${l.size}×${l.size}${l.layer === m.last_unit ? " (suggested)" : ""}</option>`));
  // A unit named in a shared URL that is not a number stays as it is.
  if (state.layer && !units.some((l) => String(l.layer) === state.layer)) opts.push(`<option value="${esc(state.layer)}">${esc(state.layer)}</option>`);
  $("layer").innerHTML = opts.join("");
}

function showCrop() {
  const img = $("mt-crop");
  img.hidden = !state.image;
  if (state.image) img.src = crop();
  $("mt-source").textContent = state.image ? "" : "No image yet: drop one above.";
}

function readInputs() {
  state.model = $("model").value;
  state.epoch = Number($("snap").value);
  for (const k of INPUTS) state[k] = $(k).value.trim();
  state.squared = $("squared").checked ? "true" : "";
  state.overlay = $("overlay-on").checked ? $("overlay").value : "";
}

// Each card's top tile: the viridis saliency, or the jet one over the crop.
function showOverlay() {
  const on = $("overlay-on").checked, a = $("overlay").value;
  for (const c of document.querySelectorAll(".mt-card")) {
    c.querySelector(".mt-heat").hidden = on;
    c.querySelector(".mt-stack").hidden = !on;
    c.querySelector(".mt-jet").style.opacity = a;
  }
  readInputs();
  writeURL();
}

// ---- the methods side by side ---------------------------------------------

const fmt = (v, d = 3) => (v == null ? "–" : Number(v).toFixed(d));

function renderGrid(r) {
  const unit = (x) => `<span title="${esc(x.unit)}">${esc(x.unit_short || x.unit)}</span>`;
  const what = r.class != null ? `class ${r.class}${r.class_name ? ` (${esc(r.class_name)})` : ""}` : `${unit(r)} map ${r.map}`;
  const note = r.activations ? ` <small>${esc(r.activations.note)}</small>` : "";
  $("mt-source").innerHTML = `Explaining ${what}.${note}`;
  $("mt-grid").innerHTML = r.items.map((it) => `
    <figure class="mt-card" data-method="${esc(it.method)}">
      <img src="${it.saliency_png}" alt="${esc(it.method)} saliency" width="224" height="224" class="mt-heat">
      <div class="mt-stack" hidden><img src="${crop()}" alt="the crop" width="224" height="224"><img src="${it.jet_png}" alt="${esc(it.method)} over the image" width="224" height="224" class="mt-jet"></div>
      <img src="${it.signed_png}" alt="${esc(it.method)} signed map" width="224" height="224" class="mt-signed">
      <figcaption><strong>${esc(it.method)}</strong>${it.unit && it.class != null ? ` at ${unit(it)}` : ""} · ${fmt(it.seconds, 2)} s${it.smooth ? ` · <span title="${esc(smoothText(it.smooth))}">SmoothGrad${it.smooth.squared ? "²" : ""} ×${it.smooth.samples}</span>` : ""}
        ${it.deletion_auc != null ? `<br>deletion AUC ${fmt(it.deletion_auc)} · insertion AUC ${fmt(it.insertion_auc)}` : ""}
        <br><small>${esc(it.caption)}</small></figcaption>
    </figure>`).join("");
  const scored = r.items.filter((it) => it.deletion);
  $("mt-deletion").innerHTML = scored.length ? chart(scored, "deletion", "probability of the class") : "<p class='muted'>Scores need a class (not a map).</p>";
  $("mt-insertion").innerHTML = scored.length ? chart(scored, "insertion", "probability of the class") : "";
  $("mt-figure").hidden = false;
  showOverlay();
}

const crop = () => `/api/models/${encodeURIComponent(state.model)}/images/${state.image}/crop.png`;
const smoothText = (s) => `SmoothGrad${s.squared ? "²" : ""}: ${s.samples} noisy copies, σ ${s.noise * 100}% of the input range, seed ${s.seed}`;

const W = 520, H = 270, L = 42, R = 12, T = 26, B = 40;

function legend(names) {
  let x = L + 8, y = 13, s = "";
  for (const name of names) {
    if (x + name.length * 6.5 + 30 > W) { x = L + 8; y += 14; }
    s += `<rect x="${x}" y="${y - 9}" width="10" height="10" fill="${COLORS[name] || "#333"}"/><text x="${x + 14}" y="${y}" font-size="11">${esc(name)}</text>`;
    x += 14 + name.length * 6.5 + 16;
  }
  return s;
}

// series: [{name, points: [[x in 0..1, y in ymin..ymax]]}]
function lines(series, { xLabel, yLabel, ymin = 0, ymax = 1, xTicks }) {
  const xOf = (x) => L + x * (W - L - R), yOf = (v) => H - B - ((v - ymin) / (ymax - ymin)) * (H - B - T - 14);
  let s = `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#888"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#888"/>`;
  for (let i = 0; i <= 4; i++) {
    const v = ymin + (i / 4) * (ymax - ymin), y = yOf(v);
    s += `<line x1="${L - 4}" y1="${y}" x2="${W - R}" y2="${y}" stroke="#eee"/><text x="${L - 6}" y="${y + 4}" text-anchor="end" font-size="11">${v.toFixed(2)}</text>`;
  }
  for (const [x, label] of xTicks) s += `<text x="${xOf(x)}" y="${H - B + 14}" text-anchor="middle" font-size="11">${esc(label)}</text>`;
  s += `<text x="${(L + W) / 2}" y="${H - 6}" text-anchor="middle" font-size="11">${esc(xLabel)}</text>`;
  s += `<text x="12" y="${(H - B + T) / 2}" font-size="11" transform="rotate(-90 12 ${(H - B + T) / 2})" text-anchor="middle">${esc(yLabel)}</text>`;
  for (const sr of series) {
    const pts = sr.points.filter((p) => p[1] != null);
    s += `<polyline fill="none" stroke="${COLORS[sr.name] || "#333"}" stroke-width="2" points="${pts.map((p) => `${xOf(p[0]).toFixed(1)},${yOf(p[1]).toFixed(1)}`).join(" ")}"><title>${esc(sr.title || sr.name)}</title></polyline>`;
  }
  return `<svg viewBox="0 0 ${W} ${H}" class="chart" role="img" aria-label="${esc(yLabel)}">${s}${legend(series.map((x) => x.name))}</svg>`;
}

function chart(items, key, yLabel) {
  const series = items.map((it) => {
    const p = it[key], n = p.length - 1;
    return { name: it.method, title: `${it.method}: AUC ${fmt(it[key + "_auc"])}`, points: p.map((v, k) => [k / n, v]) };
  });
  const ymax = Math.max(0.05, ...items.flatMap((it) => it[key]));
  return lines(series, { xLabel: `pixels ${key === "deletion" ? "deleted" : "inserted"}, most salient first`, yLabel, ymax: Math.min(1, Math.ceil(ymax * 20) / 20), xTicks: [[0, "0%"], [0.5, "50%"], [1, "100%"]] });
}

async function run() {
  readInputs();
  writeURL();
  if (!state.image) { showError("Choose an image first."); return; }
  showError("");
  const g = ++generation;
  $("mt-idle").hidden = true;
  $("mt-progress").hidden = false;
  $("mt-figure").hidden = true;
  const url = `/api/methods?${query(ASKED)}`;
  try {
    const r = await jobResult(url, (p, purl) => {
      $("mt-bar").max = p.total || 200 * METHODS.length;
      $("mt-bar").value = p.done || 0;
      // 200 steps a method: 100 for its map (Score-CAM, Ablation-CAM and
      // SmoothGrad count their passes), 100 for its scores.
      const n = (p.total || 200 * METHODS.length) / 200, at = Math.min(n, Math.floor((p.done || 0) / 200) + 1);
      $("mt-stage").textContent = `method ${at}/${n} (${(METHODS[at - 1] || {}).label || ""}: map, then scores), ${jobStatus(p)}`;
      $("mt-cancel").onclick = () => fetch(purl, { method: "DELETE" });
    }, () => g === generation);
    last = r;
    renderGrid(r);
  } catch (e) {
    if (e.superseded) return;
    if (e.cancelled) { $("mt-source").textContent = "Cancelled."; return; }
    showError(e.message);
  } finally {
    if (g === generation) $("mt-progress").hidden = true;
  }
}

// "Download figure": the saliency row with captions, as one PNG.
async function downloadFigure() {
  if (!last) return;
  const items = last.items, tile = 224, pad = 8, capH = 40, head = 24;
  const c = document.createElement("canvas");
  c.width = items.length * (tile + pad) + pad;
  c.height = 2 * tile + capH + 3 * pad + head;
  const ctx = c.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, c.width, c.height);
  const load = (src) => new Promise((ok, err) => { const i = new Image(); i.onload = () => ok(i); i.onerror = err; i.src = src; });
  ctx.fillStyle = "#222";
  ctx.font = "14px sans-serif";
  const what = last.class != null ? `class ${last.class}${last.class_name ? ` (${last.class_name})` : ""}` : `${last.unit_short || last.unit} map ${last.map}`;
  const on = $("overlay-on").checked, alpha = Number($("overlay").value);
  const top = on ? `saliency over the image (jet, opacity ${alpha})` : "saliency (max |value| over channels, 99.5th percentile = top of the scale)";
  ctx.fillText(`${state.model}, epoch ${state.epoch}: ${what}. Top: ${top}; bottom: signed map.`, pad, 17);
  const base = on ? await load(crop()) : null;
  ctx.translate(0, head);
  ctx.font = "13px sans-serif";
  for (const [i, it] of items.entries()) {
    const x = pad + i * (tile + pad);
    if (on) {
      ctx.drawImage(base, x, pad, tile, tile);
      ctx.globalAlpha = alpha;
      ctx.drawImage(await load(it.jet_png), x, pad);
      ctx.globalAlpha = 1;
    } else ctx.drawImage(await load(it.saliency_png), x, pad);
    ctx.drawImage(await load(it.signed_png), x, 2 * pad + tile);
    ctx.fillText(`${it.method} (${fmt(it.seconds, 2)} s)`, x, 3 * pad + 2 * tile + 12);
    if (it.deletion_auc != null) ctx.fillText(`del ${fmt(it.deletion_auc)} · ins ${fmt(it.insertion_auc)}`, x, 3 * pad + 2 * tile + 30);
  }
  const a = document.createElement("a");
  a.href = c.toDataURL("image/png");
  a.download = `methods-${state.model}-${state.epoch}-${(state.image || "").slice(0, 8)}.png`;
  a.click();
}

// ---- sanity check ---------------------------------------------------------

function renderSanity(r) {
  const steps = r.steps, n = steps.length - 1;
  const series = r.methods.map((m) => ({ name: m, points: steps.map((s, k) => [n ? k / n : 0, (s.scores[m] || {}).spearman_abs]) }));
  const ticks = steps.map((s, k) => [n ? k / n : 0, k === 0 ? "trained" : s.randomised[s.randomised.length - 1]]);
  const lo = Math.min(0, ...series.flatMap((s) => s.points.map((p) => p[1]).filter((v) => v != null)));
  const ymin = Math.floor(lo * 4) / 4;
  $("sc-curves").innerHTML = lines(series, { xLabel: "layers re-initialised, from the output down", yLabel: "Spearman of |map| with the trained", ymin, ymax: 1, xTicks: ticks });
  const head = `<tr><th>step</th><th>re-initialised</th>${r.methods.map((m) => `<th>${esc(m)}</th>`).join("")}</tr>`;
  const rows = steps.map((s) => `<tr><td>${s.step}</td><td>${esc(s.randomised.length ? s.randomised[s.randomised.length - 1] : "– (trained)")}</td>${r.methods.map((m) => {
    const v = s.scores[m] || {};
    const t = `Spearman |map| ${fmt(v.spearman_abs)}, signed ${fmt(v.spearman)}, SSIM ${fmt(v.ssim)}, HOG ${fmt(v.hog)}`;
    return `<td><img src="${(s.png || {})[m] || ""}" width="80" height="80" alt="${esc(m)} step ${s.step}" title="${esc(t)}"><br><small>${fmt(v.spearman_abs, 2)} · ${fmt(v.ssim, 2)}</small></td>`;
  }).join("")}</tr>`).join("");
  $("sc-strip").innerHTML = `<p class="muted">Class ${r.class}, seed ${r.seed}. Under each map: Spearman rank correlation of |map| and SSIM with the trained model's (hover for all four scores).</p><table class="sc-table"><thead>${head}</thead><tbody>${rows}</tbody></table>`;
}

async function sanity() {
  readInputs();
  writeURL();
  if (!state.image) { showError("Choose an image first."); return; }
  showError("");
  const g = ++generation;
  $("sc-progress").hidden = false;
  try {
    const r = await jobResult(`/api/sanity?${query(["seed", "steps"])}`, (p, purl) => {
      $("sc-bar").max = p.total || 9;
      $("sc-bar").value = p.done || 0;
      $("sc-stage").textContent = `${p.done || 0}/${p.total || "?"}, ${jobStatus(p)}`;
      $("sc-cancel").onclick = () => fetch(purl, { method: "DELETE" });
    }, () => g === generation);
    renderSanity(r);
  } catch (e) {
    if (e.superseded) return;
    if (e.cancelled) { $("sc-strip").textContent = "Cancelled."; return; }
    showError(e.message);
  } finally {
    if (g === generation) $("sc-progress").hidden = true;
  }
}

function init() {
  readURL();
  fill();
  showCrop();
  $("model").onchange = () => { state.model = $("model").value; state.epoch = null; state.layer = ""; fill(); showCrop(); };
  $("run").onclick = run;
  $("sanity-run").onclick = sanity;
  $("mt-figure").onclick = downloadFigure;
  $("overlay-on").onchange = showOverlay;
  $("overlay").oninput = showOverlay;
  wireUploads(async (f) => {
    const id = await uploadFile(f);
    if (id) { state.image = id; showCrop(); writeURL(); run(); }
  });
  loadRecent({ title: "explain this image", isCurrent: (id) => id === state.image, onPick: (id) => { state.image = id; showCrop(); writeURL(); run(); } });
  $("back").href = `/?model=${encodeURIComponent(state.model || "")}&snapshot=${state.epoch ?? ""}${state.image ? `&image=${state.image}` : ""}`;
  if (state.image) run();
}

init();
