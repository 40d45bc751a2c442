// Small DOM helpers shared by the views.

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
