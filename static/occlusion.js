// Occlusion view (paper Fig. 7): a live occluder dragged over the image and
// the full sensitivity maps drawn on canvases with values on hover.

import { $, fillTop, lastConv, figureLink } from "./ui.js";

const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
export function viridis(t) {
  t = Math.max(0, Math.min(1, Number.isFinite(t) ? t : 0)) * 4;
  const i = Math.min(3, Math.floor(t)), f = t - i;
  return VIRIDIS[i].map((c, k) => Math.round(c * (1 - f) + VIRIDIS[i + 1][k] * f));
}
// Ten distinct colours (Tableau 10), then black and white.
const LABELS = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
  [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207], [0, 0, 0], [255, 255, 255]];

/// Colours for the labels of a map: by how many cells each label wins, so
/// the (up to 12) labels shown get distinct colours whatever their indices.
export function labelColours(grid) {
  const count = new Map();
  for (const l of grid.flat()) count.set(l, (count.get(l) || 0) + 1);
  const order = [...count.keys()].sort((a, b) => count.get(b) - count.get(a) || a - b);
  const colour = new Map(order.map((l, i) => [l, LABELS[Math.min(i, LABELS.length - 1)]]));
  return { order, colour: (l) => colour.get(l) || LABELS[LABELS.length - 1] };
}
const rgb = (c) => `rgb(${c[0]},${c[1]},${c[2]})`;

export function createOcclusion({ state, model, base, api, writeURL, showError }) {
  let result = null;
  let shown = null; // the model/snapshot/image the maps belong to
  let inflight = false;
  let wanted = null; // latest live position asked for while one was in flight
  const S = () => model().input_size;

  function fillClasses() {
    const sel = $("occ-class");
    const names = model().class_names || [];
    sel.innerHTML = '<option value="">top class</option>' +
      names.map((n, i) => `<option value="${i}">${i}: ${n.replace(/</g, "&lt;")}</option>`).join("");
    sel.value = state.class ?? "";
  }

  function placeSquare() {
    const stage = $("occ-stage"), k = stage.clientWidth / S();
    const sq = $("occ-square");
    sq.style.width = sq.style.height = `${state.size * k}px`;
    sq.style.left = `${state.ox * k}px`;
    sq.style.top = `${state.oy * k}px`;
    $("occ-size").value = state.size;
    $("occ-size-val").textContent = state.size;
  }

  function clampPos() {
    const s = S();
    state.size = Math.max(1, Math.min(s, Math.round(state.size)));
    state.ox = Math.max(0, Math.min(s - state.size, Math.round(state.ox)));
    state.oy = Math.max(0, Math.min(s - state.size, Math.round(state.oy)));
  }

  // Requests coalesce: at most one in flight; when it returns, the latest
  // position (if it moved) is sent next. The page never shows a backlog.
  async function live() {
    clampPos();
    placeSquare();
    const pos = { x: state.ox, y: state.oy, size: state.size, cls: state.class };
    if (inflight) { wanted = pos; return; }
    inflight = true;
    try {
      const c = pos.cls === null || pos.cls === undefined || pos.cls === "" ? "" : `&class=${pos.cls}`;
      const r = await fetch(`${base()}/occlusion/live?x=${pos.x}&y=${pos.y}&size=${pos.size}${c}`).then(async (r) => {
        const b = await r.json();
        if (!r.ok) throw new Error(b.error || r.statusText);
        return b;
      });
      showLive(r);
    } catch (e) {
      showError(e.message);
    } finally {
      inflight = false;
      writeURL();
      if (wanted && (wanted.x !== pos.x || wanted.y !== pos.y || wanted.size !== pos.size || wanted.cls !== pos.cls)) {
        wanted = null;
        live();
      } else {
        wanted = null;
      }
    }
  }

  function showLive(r) {
    const names = model().class_names || [];
    $("live-prob").textContent = r.class_prob.toFixed(3);
    $("live-map").textContent = r.strongest_map;
    $("live-act").textContent = r.map_activation.toFixed(2);
    if (state.class === null || state.class === undefined || state.class === "") $("occ-class").options[0].textContent = `top class (${names[r.class] ?? r.class})`;
    fillTop($("live-top5"), r.top);
  }

  function wireStage() {
    const stage = $("occ-stage");
    let drag = null;
    stage.addEventListener("pointerdown", (e) => {
      e.preventDefault();
      stage.setPointerCapture(e.pointerId);
      const k = S() / stage.clientWidth, rect = stage.getBoundingClientRect();
      const px = (e.clientX - rect.left) * k, py = (e.clientY - rect.top) * k;
      const inside = px >= state.ox && px < state.ox + state.size && py >= state.oy && py < state.oy + state.size;
      drag = inside ? { dx: px - state.ox, dy: py - state.oy } : { dx: state.size / 2, dy: state.size / 2 };
      state.ox = px - drag.dx; state.oy = py - drag.dy;
      live();
    });
    stage.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const k = S() / stage.clientWidth, rect = stage.getBoundingClientRect();
      state.ox = (e.clientX - rect.left) * k - drag.dx;
      state.oy = (e.clientY - rect.top) * k - drag.dy;
      live();
    });
    const end = () => { drag = null; };
    stage.addEventListener("pointerup", end);
    stage.addEventListener("pointercancel", end);
    stage.addEventListener("wheel", (e) => {
      e.preventDefault();
      const c = state.size / 2;
      const cx = state.ox + c, cy = state.oy + c;
      state.size = Math.max(8, Math.min(S(), state.size + (e.deltaY < 0 ? 4 : -4)));
      state.ox = cx - state.size / 2; state.oy = cy - state.size / 2;
      live();
    }, { passive: false });
    $("occ-size").addEventListener("input", (e) => { state.size = Number(e.target.value); live(); });
    $("occ-class").addEventListener("change", (e) => {
      state.class = e.target.value === "" ? null : Number(e.target.value);
      live();
    });
    $("occ-stride").addEventListener("change", (e) => { state.stride = Number(e.target.value); writeURL(); });
    $("occ-run").addEventListener("click", () => runMaps());
    window.addEventListener("resize", () => { if (!$("occlusion").hidden) placeSquare(); });
  }

  function mapsURL(ext, kind) {
    const c = state.class === null || state.class === undefined || state.class === "" ? "" : `&class=${state.class}`;
    return `${base()}/occlusion${ext}?size=${state.size}&stride=${state.stride}${c}${kind ? `&kind=${kind}` : ""}`;
  }

  async function runMaps() {
    clampPos();
    const s = S(), n = Math.floor((s - state.size) / Math.max(1, state.stride)) + 1;
    $("occ-count").textContent = `${n} × ${n} = ${n * n}`;
    $("occ-progress").hidden = false;
    $("occ-run").disabled = true;
    try {
      result = await api(mapsURL(""));
      state.maps = 1;
      writeURL();
      drawMaps();
    } catch (e) {
      showError(e.message);
    } finally {
      $("occ-progress").hidden = true;
      $("occ-run").disabled = false;
    }
  }

  function drawGrid(canvas, colour) {
    const img = $("occ-img");
    const g = canvas.getContext("2d");
    const s = S();
    canvas.width = s; canvas.height = s;
    g.drawImage(img, 0, 0, s, s);
    g.globalAlpha = 0.75;
    const half = Math.floor(result.size / 2) - Math.floor(result.stride / 2);
    result.positions.y.forEach((y, i) => result.positions.x.forEach((x, j) => {
      g.fillStyle = rgb(colour(i, j));
      g.fillRect(x + half, y + half, result.stride, result.stride);
    }));
    g.globalAlpha = 1;
  }

  function range(grid) {
    const v = grid.flat();
    return [Math.min(...v), Math.max(...v)];
  }

  function drawMaps() {
    if (!result) return;
    $("occ-maps").hidden = false;
    const names = model().class_names || [];
    const [lo, hi] = range(result.map_activation);
    drawGrid($("occ-b"), (i, j) => viridis((result.map_activation[i][j] - lo) / Math.max(1e-12, hi - lo)));
    // (d): the colour scale fitted to the map (a class at p = 0.2 is not one
    // dark colour), or the fixed 0-1 scale when asked.
    const [plo, phi] = $("occ-fixed").checked ? [0, 1] : range(result.class_prob);
    drawGrid($("occ-d"), (i, j) => viridis((result.class_prob[i][j] - plo) / Math.max(1e-12, phi - plo)));
    const labels = labelColours(result.top_label);
    drawGrid($("occ-e"), (i, j) => labels.colour(result.top_label[i][j]));
    $("cap-map").textContent = result.strongest_map;
    $("cap-class").textContent = names[result.class] ?? result.class;
    $("scale-b").innerHTML = scaleBar(lo.toFixed(1), hi.toFixed(1));
    const digits = phi - plo < 0.01 ? 4 : 3;
    $("scale-d").innerHTML = scaleBar(plo.toFixed(digits), phi.toFixed(digits));
    $("legend").innerHTML = labels.order.map((l) =>
      `<span><i style="background:${rgb(labels.colour(l))}"></i>${(names[l] ?? l).toString().replace(/</g, "&lt;")}</span>`).join("");
    $("occ-downloads").hidden = false;
    $("dl-json").href = mapsURL("");
    $("dl-map").href = mapsURL(".png", "map_activation");
    $("dl-prob").href = mapsURL(".png", "class_prob");
    $("dl-label").href = mapsURL(".png", "top_label");
    figureLink($("dl-fig7"), { model: state.model, snapshot: state.snapshot, figure: "fig7", image: state.image, size: state.size, stride: state.stride, class: state.class });
  }

  function scaleBar(lo, hi) {
    const stops = [0, 0.25, 0.5, 0.75, 1].map((t) => rgb(viridis(t))).join(",");
    return `${lo} <i class="ramp" style="background:linear-gradient(90deg,${stops})"></i> ${hi}`;
  }

  function cellAt(canvas, e) {
    if (!result) return null;
    const rect = canvas.getBoundingClientRect(), k = S() / rect.width;
    const px = (e.clientX - rect.left) * k, py = (e.clientY - rect.top) * k;
    const half = Math.floor(result.size / 2) - Math.floor(result.stride / 2);
    const j = Math.floor((px - half) / result.stride), i = Math.floor((py - half) / result.stride);
    if (i < 0 || j < 0 || i >= result.positions.y.length || j >= result.positions.x.length) return null;
    return { i, j };
  }

  function wireMaps() {
    const names = () => model().class_names || [];
    $("occ-fixed").onchange = () => drawMaps();
    const tip = $("occ-tip");
    for (const id of ["occ-b", "occ-d", "occ-e"]) {
      const c = $(id);
      c.addEventListener("mousemove", (e) => {
        const cell = cellAt(c, e);
        if (!cell) { tip.hidden = true; return; }
        const { i, j } = cell;
        const label = result.top_label[i][j];
        tip.textContent = `square at x ${result.positions.x[j]}, y ${result.positions.y[i]}: ` +
          `activation ${result.map_activation[i][j].toFixed(2)}, p ${result.class_prob[i][j].toFixed(3)}, ` +
          `label ${names()[label] ?? label}`;
        tip.style.left = `${e.pageX + 12}px`;
        tip.style.top = `${e.pageY + 12}px`;
        tip.hidden = false;
      });
      c.addEventListener("mouseleave", () => { tip.hidden = true; });
      c.addEventListener("click", (e) => {
        const cell = cellAt(c, e);
        if (!cell) return;
        const x = result.positions.x[cell.j], y = result.positions.y[cell.i];
        state.ox = x; state.oy = y;
        showProjection(x, y);
        live();
      });
    }
  }

  async function showProjection(x, y) {
    const u = `${base()}/occlusion/projection?x=${x}&y=${y}&size=${state.size}`;
    try {
      const r = await api(u);
      $("occ-proj").src = u.replace("/projection?", "/projection.png?");
      $("occ-proj").hidden = false;
      $("occ-proj-cap").textContent = `(c) ${lastConv(model())} map ${r.map} with the square at x ${x}, y ${y}: strongest ${r.value.toFixed(2)}`;
    } catch (e) {
      showError(e.message);
    }
  }

  wireStage();
  wireMaps();

  return {
    async render() {
      state.size = state.size ?? 48;
      state.stride = state.stride ?? 8;
      state.ox = state.ox ?? Math.round((S() - state.size) / 2);
      state.oy = state.oy ?? Math.round((S() - state.size) / 2);
      $("occ-stride").value = state.stride;
      fillClasses();
      const img = $("occ-img");
      const src = `/api/models/${encodeURIComponent(state.model)}/images/${state.image}/crop.png`;
      if (img.getAttribute("src") !== src) {
        img.src = src;
        await img.decode().catch(() => {});
      }
      if (shown !== base()) {
        shown = base();
        result = null;
        $("occ-maps").hidden = true;
        $("occ-downloads").hidden = true;
      }
      placeSquare();
      await live();
      if (state.maps) await runMaps();
    },
  };
}
