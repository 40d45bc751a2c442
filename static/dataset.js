// Dataset views: top 9 of each map over the dataset (paper Fig. 2) and the
// training timeline (Fig. 4), with the background index build's progress.

import { $, esc, layerLabel, figureLink, setSeg, expandMaps } from "./ui.js";
import { fill, visualizeUrl } from "./visualize.js";

export function createDataset({ state, model, render, writeURL, showError }) {
  let timer = null, playing = null, timeline = null;
  // Each render is a generation; answers of an older one are dropped, so a
  // view never shows another view's (or snapshot's) content.
  let gen = 0;
  class Stale extends Error {}
  const m = () => encodeURIComponent(state.model);
  // Projections and patches cut to the receptive field (the paper's way) or whole frames.
  const frame = () => (state.frame === "full" ? "full" : "field");

  async function getOrWait(url, g) {
    // 202 = the index is being built: show progress and poll.
    for (;;) {
      const r = await fetch(url);
      const b = await r.json().catch(() => ({}));
      if (g !== gen) throw new Stale();
      if (r.status === 202) {
        $("ds-progress").hidden = false;
        $("ds-progress-text").textContent = `indexing the dataset: ${b.done} / ${b.total || "?"} images`;
        $("ds-bar").value = b.total ? b.done / b.total : 0;
        await new Promise((ok) => { timer = setTimeout(ok, 1000); });
        continue;
      }
      $("ds-progress").hidden = true;
      if (!r.ok) throw new Error(b.error || r.statusText);
      return b;
    }
  }

  function maps() {
    return ($("ds-maps").value || "0-7").replace(/\s/g, "");
  }

  async function showTop9(g) {
    const body = $("ds-body");
    body.innerHTML = "";
    const fq = `?frame=${frame()}`;
    const list = await getOrWait(`/api/models/${m()}/snapshots/${state.snapshot}/dataset/layers/${state.layer}/maps/0/top9${fq}`, g).then(() => expandMaps(maps()));
    // The trio: what each map wants to see (an optimised image) first.
    const trio = Boolean(state.want), wants = [];
    const status = document.createElement("p");
    status.className = "muted";
    if (trio) body.append(status);
    for (const k of list) {
      const url = `/api/models/${m()}/snapshots/${state.snapshot}/dataset/layers/${state.layer}/maps/${k}/top9`;
      const r = await getOrWait(url + fq, g);
      const row = document.createElement("div");
      row.className = "ds-row";
      row.innerHTML = `<div class="ds-label">${esc(layerLabel(model(), state.layer))}<br>map ${k}</div>`;
      if (trio) {
        row.classList.add("trio");
        const w = document.createElement("span");
        w.className = "ds-wants";
        w.title = `what map ${k} wants to see (optimising…)`;
        row.append(w);
        wants.push(w);
      }
      const grid = document.createElement("div");
      grid.className = "ds-grid";
      r.items.forEach((it, i) => {
        for (const part of [0, 1]) {
          const cell = document.createElement("span");
          cell.className = "ds-cell";
          cell.style.backgroundImage = `url(${url}.png${fq})`;
          cell.style.backgroundPosition = `${(i / 8) * 100}% ${part * 100}%`;
          cell.style.gridColumn = String(i + 1);
          cell.style.gridRow = String(part + 1);
          cell.title = `${it.image}: ${it.value.toFixed(3)} at (${it.y}, ${it.x})${part ? " — open this image" : ""}`;
          if (part) cell.onclick = () => openImage(it.image, k);
          grid.append(cell);
        }
      });
      if (!r.items.length) grid.textContent = "This map is silent (activation 0) on every image of the dataset.";
      row.append(grid);
      body.append(row);
    }
    if (trio) {
      status.textContent = "What each map wants to see (left): optimising…";
      await fill(visualizeUrl(state, list.join(","), { steps: state.vsteps, seed: state.vseed }), wants, model().input_size, (text) => {
        status.textContent = text ? `What each map wants to see (left): ${text}` : "Left: what each map wants to see (an image optimised to excite it); then the projections of its top 9 over the dataset and their patches.";
      }, () => g === gen);
    }
  }

  async function openImage(rel, map) {
    try {
      const r = await fetch("/api/dataset/images", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ image: rel }) });
      const b = await r.json();
      if (!r.ok) throw new Error(b.error);
      Object.assign(state, { image: b.id, map, view: "maps" });
      render();
    } catch (e) {
      showError(e.message);
    }
  }

  async function showTimeline(g) {
    const q = `layer=${state.layer}&maps=${encodeURIComponent(maps())}&frame=${frame()}`;
    const url = `/api/models/${m()}/dataset/timeline`;
    timeline = await getOrWait(`${url}?${q}`, g);
    const t = timeline;
    const cols = t.epochs.length;
    const head = t.epochs.map((e, c) => `<th data-c="${c}">epoch ${e}${t.errors[c] ? `<div class="err" title="${esc(t.errors[c])}">⚠ ${esc(t.errors[c]).slice(0, 60)}</div>` : ""}</th>`).join("");
    const rows = t.maps.map((k, r) => `<tr><th>map ${k}</th>` + t.epochs.map((e, c) => {
      const cell = t.cells[r][c];
      const pos = `${cols > 1 ? (c / (cols - 1)) * 100 : 0}% ${t.maps.length > 1 ? (r / (t.maps.length - 1)) * 100 : 0}%`;
      const size = `${cols * 100}% ${t.maps.length * 100}%`;
      return `<td data-c="${c}">${cell ? `<span class="tl-cell" style="background-image:url(${url}.png?${q});background-position:${pos};background-size:${size}">` +
        `<span class="tl-patch" style="background-image:url(${url}.png?${q}&kind=patches);background-position:${pos};background-size:${size}"></span></span>` +
        `<small title="${esc(cell.image)}">${cell.value.toFixed(2)}</small>` : "–"}</td>`;
    }).join("") + "</tr>").join("");
    $("ds-body").innerHTML = `<p class="muted">Hover a cell for its image patch. Each cell: the projection of the map's strongest activation over the dataset at that epoch.</p>` +
      `<div class="tl-wrap"><table class="timeline"><thead><tr><th></th>${head}</tr></thead><tbody>${rows}</tbody></table></div>`;
    $("ds-scrub").hidden = cols < 2;
    $("ds-epoch").max = cols - 1;
    scrub(Number($("ds-epoch").value) || 0);
  }

  function scrub(c) {
    if (!timeline) return;
    $("ds-epoch").value = c;
    $("ds-epoch-label").textContent = `epoch ${timeline.epochs[c]}`;
    for (const el of $("ds-body").querySelectorAll("[data-c]")) el.classList.toggle("now", Number(el.dataset.c) === c);
  }

  $("ds-epoch").addEventListener("input", (e) => scrub(Number(e.target.value)));
  $("ds-play").addEventListener("click", () => {
    if (playing) { clearInterval(playing); playing = null; $("ds-play").textContent = "▶ Play"; return; }
    $("ds-play").textContent = "❚❚ Pause";
    playing = setInterval(() => {
      const n = Number($("ds-epoch").max) + 1;
      scrub((Number($("ds-epoch").value) + 1) % n);
    }, 900);
  });
  $("ds-run").addEventListener("click", () => { state.maps_sel = maps(); writeURL(); go(); });
  $("ds-want").addEventListener("change", (e) => { state.want = e.target.checked ? 1 : null; writeURL(); go(); });
  $("ds-frames").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    state.frame = b.dataset.frame;
    setSeg($("ds-frames"), "frame", frame());
    writeURL();
    go();
  });

  async function go() {
    clearTimeout(timer);
    const g = ++gen;
    timeline = null;
    $("ds-body").innerHTML = "";
    $("ds-progress").hidden = true;
    $("ds-dl").hidden = true;
    try {
      if (state.view === "timeline") await showTimeline(g); else await showTop9(g);
      figureLink($("ds-dl"), { model: state.model, snapshot: state.snapshot, figure: state.view === "timeline" ? "fig4" : "fig2", image: state.image });
    } catch (e) {
      if (e instanceof Stale || e.superseded) return;
      $("ds-progress").hidden = true;
      showError(e.message);
    }
  }

  /// What the views run over: a --dataset folder, or the image store.
  async function describeSource() {
    const d = await fetch("/api/dataset").then((r) => r.json()).catch(() => null);
    if (!d) return;
    $("ds-source").innerHTML = d.kind === "folder"
      ? `Dataset: <code>${esc(d.name)}</code>.`
      : `Dataset: the ${d.examples} example photos and the ${d.uploads} image${d.uploads === 1 ? "" : "s"} uploaded so far ` +
        `(re-indexed as images arrive). For the paper's figures, point it at a real dataset: ` +
        `<code>zfvis serve --dataset DIR</code> (any folder of images, e.g. ImageNet val) or <code>make run DATASET=DIR</code>.`;
  }

  return {
    async render() {
      $("ds-title").innerHTML = state.view === "timeline"
        ? "Training timeline <small>(paper Fig. 4): rows are maps, columns are snapshot epochs</small>"
        : "Top 9 over the dataset <small>(paper Fig. 2): projections beside the image patches; click a patch to open its image</small>";
      if (state.maps_sel) $("ds-maps").value = state.maps_sel;
      $("ds-want").checked = Boolean(state.want);
      $("ds-want-label").hidden = state.view === "timeline";
      setSeg($("ds-frames"), "frame", frame());
      describeSource();
      $("ds-scrub").hidden = true;
      await go();
    },
  };
}
