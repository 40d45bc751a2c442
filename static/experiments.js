// Invariance curves (paper Fig. 5) and the correspondence test (Table 1).

import { $, esc, figureLink } from "./ui.js";

// A small SVG line chart: x values, y values, fixed y range.
export function lineChart(xs, ys, { title, ymin = null, ymax = null, xlabel = "" }) {
  const W = 260, H = 150, L = 44, R = 8, T = 20, B = 28;
  const lo = ymin ?? Math.min(...ys), hi0 = ymax ?? Math.max(...ys);
  const hi = hi0 > lo ? hi0 : lo + 1;
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const px = (x) => L + ((x - x0) / Math.max(1e-12, x1 - x0)) * (W - L - R);
  const py = (y) => T + (1 - (y - lo) / (hi - lo)) * (H - T - B);
  const pts = xs.map((x, i) => `${px(x).toFixed(1)},${py(ys[i]).toFixed(1)}`).join(" ");
  const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(1) : v.toFixed(2));
  const dots = xs.map((x, i) =>
    `<circle cx="${px(x).toFixed(1)}" cy="${py(ys[i]).toFixed(1)}" r="2.5"><title>${fmt(x)}: ${ys[i].toFixed(4)}</title></circle>`).join("");
  return `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">
    <text x="${L}" y="13" class="ct">${esc(title)}</text>
    <line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" class="axis"/><line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" class="axis"/>
    <text x="${L - 4}" y="${T + 4}" class="tick" text-anchor="end">${fmt(hi)}</text>
    <text x="${L - 4}" y="${H - B}" class="tick" text-anchor="end">${fmt(lo)}</text>
    <text x="${L}" y="${H - B + 13}" class="tick">${fmt(x0)}</text>
    <text x="${W - R}" y="${H - B + 13}" class="tick" text-anchor="end">${fmt(x1)}</text>
    <text x="${(L + W - R) / 2}" y="${H - 4}" class="tick" text-anchor="middle">${esc(xlabel)}</text>
    <polyline points="${pts}" class="line"/>${dots}</svg>`;
}

export function createInvariance({ state, model, base, api, writeURL, showError }) {
  const names = () => model().class_names || [];
  $("inv-run").addEventListener("click", () => { state.inv = 1; run(); });
  $("inv-steps").addEventListener("change", (e) => { state.steps = Number(e.target.value); writeURL(); });
  $("inv-class").addEventListener("change", (e) => { state.class = e.target.value === "" ? null : Number(e.target.value); writeURL(); });

  function url(ext) {
    const c = state.class === null || state.class === undefined ? "" : `&class=${state.class}`;
    return `${base()}/invariance${ext}?steps=${state.steps}${c}`;
  }

  async function run() {
    $("inv-progress").hidden = false;
    try {
      const r = await api(url(""));
      writeURL();
      const rows = [["translate", "vertical translation (px)"], ["scale", "scale"], ["rotate", "rotation (degrees)"]];
      const cls = names()[r.class] ?? r.class;
      $("inv-charts").innerHTML = rows.map(([k, label]) => {
        const c = r[k];
        return lineChart(c.values, c.dist_layer1, { title: `layer 1 (${r.layer_names.layer1}) distance · ${k}`, ymin: 0, xlabel: label }) +
          lineChart(c.values, c.dist_layer7, { title: `layer 7 (${r.layer_names.layer7}) distance · ${k}`, ymin: 0, xlabel: label }) +
          lineChart(c.values, c.prob, { title: `p(${cls}) · ${k}`, ymin: 0, ymax: 1, xlabel: label });
      }).join("");
      $("inv-dl-json").href = url("");
      $("inv-dl-csv").href = url(".csv");
      figureLink($("inv-dl-fig"), { model: state.model, snapshot: state.snapshot, figure: "fig5", image: state.image, steps: state.steps, class: state.class });
      $("inv-downloads").hidden = false;
    } catch (e) {
      showError(e.message);
    } finally {
      $("inv-progress").hidden = true;
    }
  }

  return {
    async render() {
      state.steps = state.steps ?? 13;
      $("inv-steps").value = state.steps;
      const sel = $("inv-class");
      sel.innerHTML = '<option value="">top class</option>' + names().map((n, i) => `<option value="${i}">${i}: ${esc(n)}</option>`).join("");
      sel.value = state.class ?? "";
      $("inv-charts").innerHTML = "";
      $("inv-downloads").hidden = true;
      if (state.inv) await run();
    },
  };
}

const DEFAULT_PARTS = ["eye_left", "eye_right", "nose"];

export function createCorrespondence({ state, model, api, writeURL, showError }) {
  let images = []; // [{id, w, h, parts: {name: [x, y]}}] in original pixels
  let current = 0;
  const S = () => model().input_size;

  function geometry(im) {
    const s = S() / Math.min(im.w, im.h);
    const nw = Math.round(im.w * s), nh = Math.round(im.h * s);
    return { s, ox: Math.floor((nw - S()) / 2), oy: Math.floor((nh - S()) / 2) };
  }
  const toCrop = (im, p) => { const g = geometry(im); return [p[0] * g.s - g.ox, p[1] * g.s - g.oy]; };
  const toOrig = (im, p) => { const g = geometry(im); return [(p[0] + g.ox) / g.s, (p[1] + g.oy) / g.s]; };

  function dims(id) {
    return new Promise((ok, fail) => {
      const i = new Image();
      i.onload = () => ok([i.naturalWidth, i.naturalHeight]);
      i.onerror = () => fail(new Error("cannot load image"));
      i.src = `/api/images/${id}`;
    });
  }

  async function add(id, parts = {}) {
    const [w, h] = await dims(id);
    images.push({ id, w, h, parts });
    current = images.length - 1;
  }

  function draw() {
    const list = $("corr-list");
    list.innerHTML = images.map((im, i) =>
      `<button type="button" data-i="${i}" class="${i === current ? "on" : ""}"><img src="/api/models/${encodeURIComponent(state.model)}/images/${im.id}/crop.png" alt="">` +
      `<span>${Object.keys(im.parts).length} parts</span></button>`).join("");
    const im = images[current];
    $("corr-editor").hidden = !im;
    if (!im) return;
    $("corr-img").src = `/api/models/${encodeURIComponent(state.model)}/images/${im.id}/crop.png`;
    const marks = $("corr-marks");
    marks.innerHTML = Object.entries(im.parts).map(([name, p]) => {
      const [x, y] = toCrop(im, p);
      return `<span class="mark" style="left:${(x / S()) * 100}%;top:${(y / S()) * 100}%" title="${esc(name)}"><b>${esc(name)}</b></span>`;
    }).join("");
    $("corr-run").disabled = images.length < 2;
  }

  $("corr-list").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (b) { current = Number(b.dataset.i); draw(); }
  });
  $("corr-stage").addEventListener("click", (e) => {
    const im = images[current];
    if (!im) return;
    const r = $("corr-stage").getBoundingClientRect();
    const p = [((e.clientX - r.left) / r.width) * S(), ((e.clientY - r.top) / r.height) * S()];
    const name = ($("corr-part").value === "custom" ? $("corr-custom").value.trim() : $("corr-part").value) || "part";
    im.parts[name] = toOrig(im, p).map((v) => Math.round(v * 10) / 10);
    draw();
  });
  $("corr-part").addEventListener("change", (e) => { $("corr-custom").hidden = e.target.value !== "custom"; });
  $("corr-add").addEventListener("click", async () => {
    if (!state.image) return showError("Upload or pick an image first.");
    if (images.some((im) => im.id === state.image)) return;
    await add(state.image);
    draw();
  });
  $("corr-remove").addEventListener("click", () => { images.splice(current, 1); current = Math.max(0, current - 1); draw(); });
  $("corr-files").addEventListener("change", (e) => loadFiles([...e.target.files]));
  $("corr-run").addEventListener("click", () => run(true));

  // Images plus a landmarks file: {"file": {"part": [x, y]}} in original pixels.
  async function loadFiles(files) {
    const lm = files.find((f) => f.name.endsWith(".json"));
    if (!lm) return showError("Choose the images together with their landmarks .json file.");
    let marks;
    try { marks = JSON.parse(await lm.text()); } catch (e) { return showError(`${lm.name}: ${e.message}`); }
    images = [];
    for (const f of files.filter((f) => f !== lm)) {
      if (!marks[f.name]) continue;
      const fd = new FormData();
      fd.append("image", f);
      try {
        const r = await api("/api/images", { method: "POST", body: fd });
        await add(r.id, marks[f.name]);
      } catch (e) {
        showError(`${f.name}: ${e.message}`);
      }
    }
    current = 0;
    draw();
  }

  async function run(store) {
    try {
      if (store) {
        const body = JSON.stringify({ images: images.map((im) => ({ id: im.id, parts: im.parts })) });
        const r = await api("/api/sets", { method: "POST", body, headers: { "content-type": "application/json" } });
        state.set = r.id;
      }
      state.size = Number($("corr-size").value) || 24;
      state.seed = Number($("corr-seed").value) || 0;
      writeURL();
      $("corr-progress").hidden = false;
      const r = await api(`/api/models/${encodeURIComponent(state.model)}/snapshots/${state.snapshot}/correspondence?set=${state.set}&size=${state.size}&seed=${state.seed}`);
      showResult(r);
    } catch (e) {
      showError(e.message);
    } finally {
      $("corr-progress").hidden = true;
    }
  }

  function showResult(r) {
    const paper = Object.fromEntries(r.paper.map((p) => [p.part, p]));
    const f = (s) => `${s.mean.toFixed(3)} ± ${s.std.toFixed(3)}`;
    $("corr-table").innerHTML = `<table><thead><tr><th>occluded</th><th>layer 5 (${esc(r.layer_names.layer5)})</th><th>layer 7 (${esc(r.layer_names.layer7)})</th><th>paper layer 5</th><th>paper layer 7</th></tr></thead><tbody>` +
      Object.entries(r.parts).map(([p, v]) => `<tr><td>${esc(p)}</td><td>${f(v.layer5)}</td><td>${f(v.layer7)}</td>` +
        `<td>${paper[p] ? paper[p].layer5.toFixed(3) : "–"}</td><td>${paper[p] ? paper[p].layer7.toFixed(3) : "–"}</td></tr>`).join("") +
      `</tbody></table><p class="muted">${r.pairs} image pairs; ${r.size} px squares; random locations from seed ${r.seed}. Lower = the part is treated more consistently across images.</p>`;
    figureLink($("corr-dl"), { model: state.model, snapshot: state.snapshot, figure: "table1", set: state.set, size: state.size, seed: state.seed });
    const s = S();
    $("corr-occluded").innerHTML = r.images.map((im) => Object.entries(im.squares).map(([p, [x, y]]) =>
      `<figure><div class="boxed"><img src="/api/models/${encodeURIComponent(state.model)}/images/${im.label}/crop.png" alt="">` +
      `<span class="occ-sq" style="left:${(x / s) * 100}%;top:${(y / s) * 100}%;width:${(r.size / s) * 100}%;height:${(r.size / s) * 100}%"></span></div>` +
      `<figcaption>${esc(p)}</figcaption></figure>`).join("")).join("");
  }

  return {
    async render() {
      $("corr-size").value = state.size ?? 24;
      $("corr-seed").value = state.seed ?? 0;
      if (state.set && !images.length) {
        try {
          const set = await api(`/api/sets/${state.set}`);
          for (const im of set.images) await add(im.id, im.parts);
          current = 0;
        } catch (e) {
          showError(e.message);
        }
      }
      if (!images.length && state.image) await add(state.image);
      const sel = $("corr-part");
      if (!sel.options.length) sel.innerHTML = DEFAULT_PARTS.map((p) => `<option>${p}</option>`).join("") + '<option value="custom">other…</option>';
      draw();
      if (state.set) await run(false);
    },
  };
}
