// featurestore UI: search as you type on the catalog. No other script; pages work without it.
"use strict";
(function () {
  const form = document.querySelector("form.search[data-api]");
  if (!form) return;
  const body = document.querySelector("#results tbody");
  const count = document.getElementById("count");
  const pager = document.querySelector("p.pager");
  let timer = null, latest = 0;

  function cell(row, text, cls) {
    const td = row.insertCell();
    if (cls) td.className = cls;
    if (text !== undefined) td.textContent = text;
    return td;
  }

  function show(data) {
    body.replaceChildren();
    for (const e of data.entries) {
      const row = body.insertRow();
      const kind = document.createElement("span");
      kind.className = "kind kind-" + e.kind;
      kind.textContent = e.label;
      cell(row).appendChild(kind);
      const a = document.createElement("a");
      a.href = e.url;
      a.textContent = e.name;
      cell(row).appendChild(a);
      cell(row, e.dtype);
      cell(row, e.owner);
      const tags = cell(row);
      for (const t of e.tags) {
        const s = document.createElement("span");
        s.className = "tag";
        s.textContent = t;
        tags.appendChild(s);
      }
      cell(row, e.description, "desc");
    }
    count.textContent = data.total.toLocaleString() + (data.total === 1 ? " match" : " matches");
    if (pager) pager.hidden = true; // the form's submit pages through a search
  }

  function search() {
    const params = new URLSearchParams(new FormData(form));
    const mine = ++latest;
    history.replaceState(null, "", "?" + params.toString());
    fetch(form.dataset.api + "?" + params.toString(), { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((data) => { if (mine === latest) show(data); })
      .catch((status) => { if (status === 401) location.reload(); });
  }

  form.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 120); });
  form.addEventListener("change", () => { clearTimeout(timer); search(); });
})();
