// zfvis feature analysis (paper §5): accuracy of linear classifiers per layer
// (Table 7) and the few-shot transfer curve (Fig. 9), beside the paper's.
// State in the URL: model, epoch, train_per_class, shots, seeds, scratch_epochs, classes.

import { $, models, esc, showError, jobResult, jobStatus } from "./ui.js";

const FIELDS = { tpc: "train_per_class", shots: "shots", seeds: "seeds", scratch: "scratch_epochs", classes: "classes" };
const state = { model: null, epoch: null, train_per_class: "30", shots: "1,5,10,20", seeds: "2", scratch_epochs: "10", classes: "" };
let generation = 0;
const find = (name) => models.find((m) => m.name === name);

function readURL() {
  const q = new URLSearchParams(location.search);
  for (const k of Object.keys(state)) if (q.get(k) !== null) state[k] = q.get(k);
  if (state.epoch !== null) state.epoch = Number(state.epoch);
  return q.has("model");
}

function query() {
  const q = new URLSearchParams();
  q.set("model", state.model);
  if (state.epoch !== null) q.set("epoch", state.epoch);
  for (const k of ["train_per_class", "shots", "seeds", "scratch_epochs", "classes"]) if (state[k] !== "") q.set(k, state[k]);
  return q.toString();
}

function fill() {
  if (!find(state.model)) state.model = (models.find((m) => m.name === "zfnet-imagenette") || models[0] || {}).name || null;
  const snaps = (find(state.model) || { snapshots: [] }).snapshots;
  if (!snaps.some((s) => s.epoch === state.epoch)) state.epoch = snaps.length ? snaps[snaps.length - 1].epoch : null;
  const ms = $("model");
  ms.innerHTML = models.map((m) => `<option value="${esc(m.name)}">${esc(m.name)} (${esc(m.architecture)})</option>`).join("");
  ms.value = state.model;
  $("snap").innerHTML = snaps.map((s) => `<option value="${s.epoch}">${s.epoch}</option>`).join("");
  $("snap").value = state.epoch;
  for (const [id, k] of Object.entries(FIELDS)) $(id).value = state[k];
}

// ---- charts (SVG, no library) ---------------------------------------------

const W = 520, H = 270, L = 42, R = 12, T = 26, B = 40;
const COLORS = { softmax: "#2e6bd6", svm: "#d9822b", pretrained: "#2e6bd6", scratch: "#c0392b", bo: "#7f8c8d" };

function axes(yLabel) {
  let s = `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#888"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#888"/>`;
  for (let v = 0; v <= 100; v += 20) {
    const y = H - B - (v / 100) * (H - B - T);
    s += `<line x1="${L - 4}" y1="${y}" x2="${W - R}" y2="${y}" stroke="#eee"/><text x="${L - 6}" y="${y + 4}" text-anchor="end" font-size="11">${v}</text>`;
  }
  return s + `<text x="12" y="${T + (H - B - T) / 2}" font-size="11" transform="rotate(-90 12 ${T + (H - B - T) / 2})" text-anchor="middle">${esc(yLabel)}</text>`;
}

const yOf = (pct) => H - B - (pct / 100) * (H - B - T);

function legend(items) {
  let x = L + 8, s = "";
  for (const [name, color] of items) {
    s += `<rect x="${x}" y="4" width="10" height="10" fill="${color}"/><text x="${x + 14}" y="13" font-size="11">${esc(name)}</text>`;
    x += 14 + name.length * 6.5 + 16;
  }
  return s;
}

function bars(layers, keys) {
  const n = layers.length, slot = (W - L - R) / n, bw = Math.min(18, slot / (keys.length + 1));
  let s = axes("accuracy, %");
  layers.forEach((l, i) => {
    keys.forEach((k, j) => {
      if (l[k] == null) return;
      const x = L + i * slot + slot / 2 + (j - keys.length / 2) * bw, y = yOf(l[k] * 100);
      s += `<rect x="${x}" y="${y}" width="${bw - 2}" height="${H - B - y}" fill="${COLORS[k]}"><title>${esc(l.layer)} ${k}: ${(l[k] * 100).toFixed(1)}%</title></rect>`;
    });
    s += `<text x="${L + i * slot + slot / 2}" y="${H - B + 14}" text-anchor="middle" font-size="11">${esc(l.layer.length > 10 ? l.layer.slice(0, 9) + "…" : l.layer)}</text>`;
  });
  return `<svg viewBox="0 0 ${W} ${H}" class="chart" role="img" aria-label="accuracy per layer">${s}${legend(keys.map((k) => [k, COLORS[k]]))}</svg>`;
}

// series: [{name, color, points: [[x, mean%, std%]]}], x on a log scale.
function curves(series, xLabel) {
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const lo = Math.log(Math.min(...xs)), hi = Math.log(Math.max(...xs));
  const xOf = (x) => L + 10 + (hi > lo ? (Math.log(x) - lo) / (hi - lo) : 0.5) * (W - L - R - 20);
  let s = axes("accuracy, %");
  for (const x of [...new Set(xs)]) s += `<text x="${xOf(x)}" y="${H - B + 14}" text-anchor="middle" font-size="11">${x}</text>`;
  s += `<text x="${(L + W) / 2}" y="${H - 6}" text-anchor="middle" font-size="11">${esc(xLabel)}</text>`;
  for (const sr of series) {
    s += `<polyline fill="none" stroke="${sr.color}" stroke-width="2" points="${sr.points.map((p) => `${xOf(p[0])},${yOf(p[1])}`).join(" ")}"/>`;
    for (const [x, m, sd] of sr.points) {
      s += `<line x1="${xOf(x)}" x2="${xOf(x)}" y1="${yOf(m - sd)}" y2="${yOf(m + sd)}" stroke="${sr.color}"/>`;
      s += `<circle cx="${xOf(x)}" cy="${yOf(m)}" r="3" fill="${sr.color}"><title>${esc(sr.name)}, ${x}: ${m.toFixed(1)} ± ${sd.toFixed(1)}%</title></circle>`;
    }
  }
  return `<svg viewBox="0 0 ${W} ${H}" class="chart" role="img" aria-label="accuracy against training images a class">${s}${legend(series.map((x) => [x.name, x.color]))}</svg>`;
}

// The paper's numbers (Zeiler & Fergus 2013): Table 7, Caltech-101 (30/class) and
// Caltech-256 (60/class); Table 5 (Fig. 9's regime), Caltech-256 at 15/30/45/60 a class.
const TABLE7 = [
  ["SVM (1)", [44.8, 0.7], [24.6, 0.4]], ["SVM (2)", [66.2, 0.5], [39.6, 0.3]],
  ["SVM (3)", [72.3, 0.4], [46.0, 0.3]], ["SVM (4)", [76.6, 0.4], [51.3, 0.1]],
  ["SVM (5)", [86.2, 0.8], [65.6, 0.3]], ["SVM (7)", [85.5, 0.4], [71.7, 0.2]],
  ["Softmax (5)", [82.9, 0.4], [65.7, 0.5]], ["Softmax (7)", [85.4, 0.4], [72.6, 0.1]],
];
const TABLE5_N = [15, 30, 45, 60];
const TABLE5 = [
  ["ImageNet-pretrained", [[65.7, 0.2], [70.6, 0.2], [72.7, 0.4], [74.2, 0.3]]],
  ["Non-pretrained", [[9.0, 1.4], [22.5, 0.7], [31.2, 0.5], [38.8, 1.4]]],
  ["Bo et al. 2013", [[40.5, 0.4], [48.0, 0.2], [51.9, 0.2], [55.2, 0.3]]],
];

function renderPaper() {
  $("fa-table7").innerHTML = `<table><thead><tr><th></th><th>Caltech-101</th><th>Caltech-256</th></tr></thead><tbody>` +
    TABLE7.map(([label, ...v]) => `<tr><td>${esc(label)}</td>${v.map(([m, s]) => `<td>${m.toFixed(1)} ± ${s.toFixed(1)}</td>`).join("")}</tr>`).join("") + "</tbody></table>";
  const colors = [COLORS.pretrained, COLORS.scratch, COLORS.bo];
  $("fa-fig9").innerHTML = curves(TABLE5.map(([name, v], i) => ({
    name, color: colors[i], points: TABLE5_N.map((n, j) => [n, v[j][0], v[j][1]]),
  })), "training images a class (Caltech-256)");
}

const pct = (v) => (v == null ? "–" : (v * 100).toFixed(1));

function render(r) {
  const p = r.probe, t = r.transfer;
  $("fa-source").textContent = `${p.model} @ epoch ${p.snapshot} on ${r.dataset}: ${p.classes.length} classes, ` +
    `${p.train_images} training images (${p.train_per_class} a class), ${p.test_images} test images.`;
  $("fa-layers").innerHTML = bars(p.layers, ["softmax", "svm"]);
  $("fa-layers-table").innerHTML = `<table><thead><tr><th>layer</th><th>dims</th><th>softmax %</th><th>SVM %</th></tr></thead><tbody>` +
    p.layers.map((l) => `<tr><td>${esc(l.layer)}</td><td>${l.dims}</td><td>${pct(l.softmax)}</td><td>${pct(l.svm)}</td></tr>`).join("") + "</tbody></table>";
  const series = [{ name: `pretrained (${t.layer})`, color: COLORS.pretrained, points: t.per_class.map((n, i) => [n, t.pretrained[i].mean * 100, t.pretrained[i].std * 100]) }];
  if (t.scratch) series.push({ name: "from scratch", color: COLORS.scratch, points: t.per_class.map((n, i) => [n, t.scratch[i].mean * 100, t.scratch[i].std * 100]) });
  $("fa-curve").innerHTML = curves(series, "training images a class");
  $("fa-curve-table").innerHTML = `<table><thead><tr><th>a class</th><th>pretrained %</th><th>scratch %</th></tr></thead><tbody>` +
    t.per_class.map((n, i) => `<tr><td>${n}</td><td>${pct(t.pretrained[i].mean)} ± ${pct(t.pretrained[i].std)}</td><td>${t.scratch ? `${pct(t.scratch[i].mean)} ± ${pct(t.scratch[i].std)}` : "–"}</td></tr>`).join("") +
    `</tbody></table><p class="muted">${t.seeds} draws; from scratch: ${t.scratch_epochs} epochs; chance: ${(100 / t.classes.length).toFixed(0)}%.</p>`;
}

async function run() {
  const gen = ++generation;
  history.replaceState(null, "", "?" + query());
  $("back").href = `/?model=${encodeURIComponent(state.model)}&snapshot=${state.epoch}`;
  $("fa-idle").hidden = true;
  $("fa-progress").hidden = false;
  $("fa-bar").value = 0;
  $("fa-stage").textContent = "";
  $("fa-eta").textContent = "";
  showError("");
  // The job runs on the server whatever this page does: a reload joins it.
  const show = (p, url) => {
    if (gen !== generation) return;
    cancelUrl = url;
    if (p.state === "running") {
      $("fa-bar").value = p.done;
      $("fa-stage").textContent = p.done < 50 ? "features" : p.done < 100 ? "classifiers" : "transfer";
    } else $("fa-stage").textContent = "";
    $("fa-eta").textContent = jobStatus(p);
  };
  try {
    const r = await jobResult(`/api/features?${query()}`, show, () => gen === generation);
    if (gen === generation) render(r);
  } catch (e) {
    if (gen === generation && !e.superseded) showError(e.cancelled ? "Cancelled." : e.message);
  } finally {
    if (gen === generation) {
      $("fa-progress").hidden = true;
      cancelUrl = null;
    }
  }
}

let cancelUrl = null;
$("fa-cancel").addEventListener("click", () => {
  if (cancelUrl) fetch(cancelUrl, { method: "DELETE" });
});

function readInputs() {
  state.model = $("model").value;
  state.epoch = Number($("snap").value);
  for (const [id, k] of Object.entries(FIELDS)) state[k] = $(id).value.trim();
}

$("model").addEventListener("change", () => { readInputs(); state.epoch = null; fill(); });
$("run").addEventListener("click", () => { readInputs(); run(); });
const shared = readURL();
fill();
renderPaper();
if (shared && state.model) run();
