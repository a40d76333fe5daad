// Search page: plain DOM, no external code; text is inserted with textContent only (no HTML).
"use strict";

(() => {
  const form = document.getElementById("search-form");
  const input = document.getElementById("q");
  const kSelect = document.getElementById("k");
  const statusEl = document.getElementById("status");
  const results = document.getElementById("results");
  const banner = document.getElementById("banner");
  let maxChars = 512;
  let pending = null;

  function setStatus(text, isError) {
    statusEl.textContent = text;
    statusEl.classList.toggle("error", Boolean(isError));
  }

  async function loadInfo() {
    try {
      const response = await fetch("info", { headers: { Accept: "application/json" } });
      const info = await response.json();
      banner.textContent = `${info.banner} · ${info.images} images · search: ${info.backend}`;
      banner.classList.toggle("warn", info.spec && info.spec.weights === "random-init");
      maxChars = info.max_query_chars;
      input.maxLength = maxChars;
    } catch (err) {
      banner.textContent = "Index information unavailable: is the server running?";
      banner.classList.add("warn");
    }
  }

  function render(data) {
    results.replaceChildren();
    data.results.forEach((hit, rank) => {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = hit.url;
      link.className = "hit";
      link.target = "_blank";
      link.rel = "noopener";
      const figure = document.createElement("figure");
      const img = document.createElement("img");
      img.src = hit.url;
      img.alt = `Result ${rank + 1}: ${hit.path}`;
      img.loading = "lazy";
      img.decoding = "async";
      const caption = document.createElement("figcaption");
      const name = document.createElement("span");
      name.className = "path";
      name.dir = "auto";
      name.textContent = hit.path;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = `score ${hit.score.toFixed(3)}`;
      caption.append(name, score);
      figure.append(img, caption);
      link.append(figure);
      item.append(link);
      results.append(item);
    });
  }

  async function search(query, k) {
    if (pending) pending.abort();
    const controller = new AbortController();
    pending = controller;
    results.setAttribute("aria-busy", "true");
    setStatus("Searching…", false);
    try {
      const url = `search?q=${encodeURIComponent(query)}&k=${encodeURIComponent(k)}`;
      const response = await fetch(url, { signal: controller.signal, headers: { Accept: "application/json" } });
      const data = await response.json();
      if (!response.ok) {
        results.replaceChildren();
        setStatus(data.detail || `Search failed (HTTP ${response.status}).`, true);
        return;
      }
      render(data);
      const how = data.mode === "caption" ? "found through captions" : "found by image";
      setStatus(`${data.results.length} results for “${data.query}” (${how}).`, false);
    } catch (err) {
      if (err.name !== "AbortError") setStatus("The server could not be reached.", true);
    } finally {
      if (pending === controller) {
        pending = null;
        results.removeAttribute("aria-busy");
      }
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = input.value.trim();
    if (!query) {
      results.replaceChildren();
      setStatus("Type something to search for, in any language.", true);
      input.focus();
      return;
    }
    if (query.length > maxChars) {
      setStatus(`The search text is longer than ${maxChars} characters; shorten it.`, true);
      return;
    }
    const params = new URLSearchParams({ q: query, k: kSelect.value });
    history.replaceState(null, "", `?${params}`);
    search(query, kSelect.value);
  });

  const initial = new URLSearchParams(location.search);
  if (initial.get("k") && [...kSelect.options].some((o) => o.value === initial.get("k"))) {
    kSelect.value = initial.get("k");
  }
  loadInfo();
  if (initial.get("q")) {
    input.value = initial.get("q");
    form.requestSubmit();
  }
  input.focus();
})();
