// Helpers shared by the pages: elements, the JSON API with the busy
// indicator and the error banner, uploads (drop, paste, pick) and the list
// of recent images. Each page imports what it needs; no build step.

export const $ = (id) => document.getElementById(id);

/// The model list the page was rendered with (embedded as JSON).
export const models = JSON.parse(($("models-data") || {}).textContent || "[]");

/// "conv8 (features.18)": a conv layer's number and, when it differs, the
/// checkpoint's own name for it.
export function layerLabel(m, n) {
  const l = m && m.layers ? m.layers.find((x) => x.layer === n) : null;
  const name = l ? l.short || l.name : "";
  if (l && !l.conv) return name;
  return l && name && name !== `conv${n}` ? `conv${n} (${name})` : `conv${n}`;
}

/// The label of a model's last conv layer (the paper's conv5).
export const lastConv = (m) => layerLabel(m, m && m.last_unit ? m.last_unit : 5);

/// "0-3,7" -> [0, 1, 2, 3, 7] (the maps a view shows).
export function expandMaps(spec) {
  const out = [];
  for (const p of spec.split(",").filter(Boolean)) {
    const [a, b] = p.split("-").map(Number);
    if (b === undefined) out.push(a); else for (let i = a; i <= b; i++) out.push(i);
  }
  return out;
}

export const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

const FIGURE_FILES = {
  fig2: "fig2-top9", fig3: "fig3-architecture", fig4: "fig4-timeline", fig5: "fig5-invariance",
  fig6: "fig6-compare", fig7: "fig7-occlusion", table1: "table1-correspondence",
};

/// Point a view's "download figure" link at the PNG `zfvis figures` writes
/// for the same model, snapshot and settings (empty options are left out).
export function figureLink(a, { model, snapshot, figure, ...opts }) {
  const q = new URLSearchParams({ figure });
  for (const [k, v] of Object.entries(opts)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  a.href = `/api/models/${encodeURIComponent(model)}/snapshots/${snapshot}/figure.png?${q}`;
  a.download = `${FIGURE_FILES[figure]}-${model}-epoch${snapshot}.png`;
  a.hidden = false;
}

let pending = 0;
/// Count requests in flight; the header's spinner shows while any is.
export function busy(delta) {
  pending += delta;
  $("busy").hidden = pending <= 0;
}

export function showError(msg) {
  const e = $("error");
  e.textContent = msg;
  e.hidden = !msg;
}

/// fetch + JSON; a 4xx/5xx throws an Error carrying the server's message.
export async function api(url, opts) {
  busy(1);
  try {
    const r = await fetch(url, opts);
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
    return body;
  } finally {
    busy(-1);
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/// A background job's result. GET `url`: 200 is the result; 202 means the
/// job runs (or waits its turn) on the server, detached from this page: its
/// progress URL is polled (`onProgress(p, progressUrl)` each time) until it
/// ends, then `url` is asked again. `alive()` false stops polling (the page
/// moved on; the job goes on). A cancelled job rejects with `cancelled` set.
export async function jobResult(url, onProgress, alive = () => true) {
  busy(1);
  try {
    for (;;) {
      const r = await fetch(url);
      const body = await r.json().catch(() => ({}));
      if (r.status === 200) return body;
      if (r.status !== 202) throw new Error(body.error || `${r.status} ${r.statusText}`);
      for (;;) {
        if (!alive()) throw Object.assign(new Error("superseded"), { superseded: true });
        const p = await fetch(body.progress).then((x) => x.json()).catch(() => ({ state: "running" }));
        onProgress(p, body.progress);
        if (p.state === "cancelled") throw Object.assign(new Error("cancelled"), { cancelled: true });
        if (p.state !== "queued" && p.state !== "running") break;
        await sleep(700);
      }
    }
  } finally {
    busy(-1);
  }
}

/// "2nd in the queue" / "about 1 min 20 s left" for a job's progress.
export function jobStatus(p) {
  if (p.state === "queued") return p.position ? `waiting: ${p.position} job${p.position > 1 ? "s" : ""} ahead` : "waiting its turn";
  if (p.state !== "running") return p.state;
  if (p.eta_s == null) return "running";
  const s = Math.round(p.eta_s);
  return `about ${s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`} left`;
}

/// Upload a file to the image store; resolves to its id, or null (error shown).
export async function uploadFile(file) {
  if (!file) return null;
  showError("");
  const fd = new FormData();
  fd.append("image", file);
  try {
    return (await api("/api/images", { method: "POST", body: fd })).id;
  } catch (e) {
    showError(`Upload failed: ${e.message}`);
    return null;
  }
}

/// Drop zone, file picker and paste: each chosen file goes to `onFile`.
export function wireUploads(onFile) {
  const drop = $("drop");
  $("pick").onclick = () => $("file").click();
  drop.onclick = (e) => { if (e.target.id !== "pick" && e.target.id !== "file") $("file").click(); };
  $("file").onchange = (e) => onFile(e.target.files[0]);
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove("over"); onFile(e.dataTransfer.files[0]); };
  document.addEventListener("paste", (e) => {
    const item = [...((e.clipboardData || {}).items || [])].find((i) => i.type.startsWith("image/"));
    if (item) onFile(item.getAsFile());
  });
}

/// Fill #recent with the newest uploads; `onPick(id, img)` on click,
/// `isCurrent(id)` marks the ones shown.
export async function loadRecent({ onPick, isCurrent, title }) {
  try {
    const r = await fetch("/api/images").then((r) => r.json());
    const box = $("recent");
    box.innerHTML = "";
    for (const id of r.images || []) {
      const img = document.createElement("img");
      img.src = `/api/images/${id}`;
      img.alt = "recent image";
      img.title = title;
      img.loading = "lazy";
      img.dataset.id = id;
      img.classList.toggle("current", isCurrent(id));
      img.onclick = () => onPick(id, img);
      box.append(img);
    }
  } catch (_) { /* the list is a convenience */ }
}

/// Mark the button of a segmented control whose data-`attr` is `value`.
export function setSeg(container, attr, value) {
  for (const b of container.querySelectorAll("button")) b.classList.toggle("on", b.dataset[attr] === String(value));
}

/// Fill an <ol> with predictions [{name, prob}] as labelled bars.
export function fillTop(ol, top) {
  ol.innerHTML = "";
  for (const p of top) {
    const li = document.createElement("li");
    li.innerHTML = `<span class="name"></span><span class="prob"></span><span class="barw"><span class="bar-fill"></span></span>`;
    li.querySelector(".name").textContent = p.name;
    li.querySelector(".prob").textContent = `${(p.prob * 100).toFixed(1)}%`;
    li.querySelector(".bar-fill").style.width = `${Math.max(1, p.prob * 100)}%`;
    ol.append(li);
  }
}
