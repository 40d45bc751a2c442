// What a unit wants to see: images optimised to excite its maps (the
// Visualize job, Lucid's recipe). Used by the whole-layer view (a grid of
// every map, like OpenAI Microscope) and by the dataset top 9 (the trio of
// the deep-visualization toolbox: the optimised image beside the top 9
// patches and their projections). While the job runs, its progress carries
// a preview (every 32 steps) that the cells show, sharpening.

import { $, esc, layerLabel, jobResult, jobStatus, expandMaps } from "./ui.js";

const COLS = 8, GAP = 2; // the preview's grid (core: analyses::visualize::grid)

/// The job's URL for `maps` ("0-7", "all") of the current unit.
export function visualizeUrl(state, maps, { steps, seed } = {}) {
  const q = new URLSearchParams({ model: state.model, epoch: state.snapshot, layer: state.layer });
  if (maps !== "all") q.set("maps", maps);
  if (steps) q.set("steps", steps);
  if (seed) q.set("seed", seed);
  return `/api/visualize?${q}`;
}

/// Show each cell's picture (cell i: picture i) of a preview grid of
/// pictures of `side` px: the preview is decoded once for all the cells.
function slices(cells, preview, side) {
  const img = new Image();
  img.onload = () => cells.forEach((cell, i) => {
    const s = (cell.clientWidth || 96) / side;
    const col = i % COLS, row = Math.floor(i / COLS);
    cell.style.backgroundImage = `url(${preview})`;
    cell.style.backgroundSize = `${img.width * s}px ${img.height * s}px`;
    cell.style.backgroundPosition = `${-col * (side + GAP) * s}px ${-row * (side + GAP) * s}px`;
  });
  img.src = preview;
}

/// Run the job for the maps of `cells` (in order) and fill each cell: the
/// previews while it runs, the images once done. `status(text, p)` hears the
/// progress; `alive()` false stops (the job goes on on the server).
export async function fill(url, cells, side, status, alive, onCancel) {
  const r = await jobResult(url, (p, purl) => {
    if (p.preview) slices(cells, p.preview, side);
    status(`optimising: ${p.done || 0} / ${p.total || "?"} steps, ${jobStatus(p)}`, p);
    if (onCancel) onCancel(() => fetch(purl, { method: "DELETE" }));
  }, alive);
  r.images.forEach((im, i) => {
    const c = cells[i];
    if (!c) return;
    c.style.backgroundImage = `url(${im.png})`;
    c.style.backgroundSize = "cover";
    c.style.backgroundPosition = "center";
    c.title = `map ${im.map}: objective ${im.objective.toFixed(3)} (${r.objective}, ${r.steps} steps, seed ${r.seed})`;
  });
  status("", null);
  return r;
}

/// The whole-layer view: every map's image in a grid; click one for its trio.
export function createWants({ state, model, writeURL, showError, openMap }) {
  let gen = 0;
  async function go() {
    const g = ++gen;
    const m = model();
    const unit = m.layers[state.layer - 1] || {};
    $("vz-title").innerHTML = `What ${esc(layerLabel(m, state.layer))} wants to see <small>images optimised to excite each map (Lucid's recipe: 1/f spectrum, decorrelated colour, random jitter, scale and rotation); click one for its top 9</small>`;
    state.vsteps = Number($("vz-steps").value) || 512;
    state.vseed = Number($("vz-seed").value) || 0;
    state.vmaps = ($("vz-maps").value || "0-7").replace(/\s/g, "");
    writeURL();
    const body = $("vz-body");
    body.innerHTML = "";
    const count = unit.maps || 0;
    const list = state.vmaps === "all" ? [...Array(count).keys()] : expandMaps(state.vmaps);
    const cells = list.map((k) => {
      const fig = document.createElement("figure");
      fig.className = "vz-item";
      const cell = document.createElement("span");
      cell.className = "vz-cell";
      cell.dataset.map = k;
      fig.append(cell);
      const cap = document.createElement("figcaption");
      cap.textContent = `map ${k}`;
      fig.append(cap);
      fig.onclick = () => openMap(k);
      body.append(fig);
      return cell;
    });
    $("vz-progress").hidden = false;
    try {
      await fill(visualizeUrl(state, state.vmaps, { steps: state.vsteps, seed: state.vseed }), cells, m.input_size, (text, p) => {
        $("vz-progress-text").textContent = text;
        $("vz-bar").value = p && p.total ? p.done / p.total : 0;
      }, () => g === gen, (cancel) => { $("vz-cancel").onclick = cancel; });
    } catch (e) {
      if (e.superseded) return;
      if (e.cancelled) { $("vz-progress-text").textContent = "Cancelled."; return; }
      showError(e.message);
    } finally {
      if (g === gen) $("vz-progress").hidden = true;
    }
  }
  $("vz-run").addEventListener("click", go);
  return {
    async render() {
      if (state.vsteps) $("vz-steps").value = state.vsteps;
      if (state.vseed != null) $("vz-seed").value = state.vseed;
      if (state.vmaps) $("vz-maps").value = state.vmaps;
      await go();
    },
  };
}
