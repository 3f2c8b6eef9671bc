// The search page. Its state lives in the query string (/?q=...&mode=...&alpha=...&k=...&index=...):
// submitting the form pushes a new URL and searches, loading or going back to a URL searches again.
// Text from documents and from the server is only ever set with textContent, never parsed as HTML.
"use strict";

const PARAMS = ["q", "mode", "alpha", "k", "index"];
const MODES = ["ff", "bm25", "dense", "hybrid"];
const FUSED = ["ff", "hybrid"];                     // the modes that interpolate BM25 and dense scores with alpha
const STAGES = ["encode", "sparse", "dense", "rerank", "documents"];

const form = document.getElementById("search");
const q = document.getElementById("q");
const alpha = document.getElementById("alpha");
const alphaValue = document.getElementById("alpha-value");
const alphaLabel = alpha.closest("label");
const k = document.getElementById("k");
const index = document.getElementById("index");
const statusLine = document.getElementById("status");
const results = document.getElementById("results");

let indexes = [];                                   // from /v1/indexes: name, default, modes
const defaults = { alpha: alpha.value, k: k.value, index: "" };
let pending = null;                                 // the AbortController of the search in flight

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function currentMode() {
  return form.elements.mode.value;
}

function fmt(value) {
  if (value === null || value === undefined) return "–";
  return Math.abs(value) >= 1000 ? value.toPrecision(4) : value.toFixed(3);
}

// Disable the modes the chosen index lacks, and the alpha slider outside the fused modes.
function syncControls() {
  const info = indexes.find((i) => i.name === index.value);
  const allowed = info ? info.modes : MODES;
  for (const radio of form.elements.mode) radio.disabled = !allowed.includes(radio.value);
  if (!allowed.includes(currentMode())) form.elements.mode.value = allowed[0];
  const fused = FUSED.includes(currentMode());
  alpha.disabled = !fused;
  alphaLabel.classList.toggle("off", !fused);
  alphaValue.value = Number(alpha.value).toFixed(2);
}

// The search the form describes, as query-string parameters.
function formParams() {
  const params = new URLSearchParams();
  params.set("q", q.value);
  params.set("mode", currentMode());
  if (FUSED.includes(currentMode())) params.set("alpha", alpha.value);
  params.set("k", k.value);
  if (index.value && index.value !== defaults.index) params.set("index", index.value);
  return params;
}

// The search the URL describes (only the parameters the API knows), copied into the form.
function urlParams() {
  const given = new URLSearchParams(window.location.search);
  const params = new URLSearchParams();
  for (const name of PARAMS) if (given.has(name)) params.set(name, given.get(name));
  q.value = params.get("q") ?? "";
  index.value = indexes.some((i) => i.name === params.get("index")) ? params.get("index") : defaults.index;
  form.elements.mode.value = MODES.includes(params.get("mode")) ? params.get("mode") : MODES[0];
  alpha.value = params.get("alpha") ?? defaults.alpha;
  k.value = params.get("k") ?? defaults.k;
  syncControls();
  return params;
}

function setStatus(parts, isError = false) {
  statusLine.replaceChildren(...parts);
  statusLine.classList.toggle("error", isError);
}

function showError(message) {
  results.replaceChildren();
  setStatus([el("span", "message", message)], true);
}

function labelled(label, value, swatch) {
  const span = el("span", "score");
  if (swatch) span.append(el("i", `swatch ${swatch}`));
  span.append(`${label} `, el("b", "", fmt(value)));
  return span;
}

function scoreLine(hit, body) {
  const line = el("div", "scores");
  line.append(labelled("score", hit.score));
  if (FUSED.includes(body.mode) && hit.score_sparse !== null && hit.score_dense !== null) {
    const sparse = body.alpha * hit.score_sparse;
    const dense = (1 - body.alpha) * hit.score_dense;
    const bar = el("span", "bar");
    bar.title = `α·BM25 ${fmt(sparse)} + (1−α)·dense ${fmt(dense)}`;
    const parts = [el("span", "sparse"), el("span", "dense")];
    parts[0].style.width = `${Math.max(0, Math.min(1, sparse)) * 100}%`;
    parts[1].style.width = `${Math.max(0, Math.min(1, dense)) * 100}%`;
    bar.append(...parts);
    line.append(bar);
  }
  line.append(labelled("BM25", hit.score_sparse, "sparse"), labelled("dense", hit.score_dense, "dense"));
  return line;
}

function hitItem(hit, body) {
  const item = el("li", "hit");
  item.dataset.docno = hit.docno;
  const head = el("div", "hit-head");
  const title = el("a", hit.title ? "title" : "title untitled", hit.title || "(untitled)");
  title.href = `/v1/docs/${encodeURIComponent(hit.docno)}?index=${encodeURIComponent(body.index)}`;
  head.append(el("span", "rank", String(hit.rank)), title, el("span", "docno", hit.docno));
  item.append(head);
  if (hit.snippet) item.append(el("p", "snippet", hit.snippet));
  item.append(scoreLine(hit, body));
  return item;
}

function render(body) {
  results.replaceChildren(...body.hits.map((hit) => hitItem(hit, body)));
  const stages = STAGES.filter((s) => s in body.timings_ms);
  const total = stages.reduce((sum, s) => sum + body.timings_ms[s], 0);
  const count = body.hits.length === 1 ? "1 result" : `${body.hits.length} results`;
  const timings = el("span", "timings",
    ` in ${total.toFixed(1)} ms (${stages.map((s) => `${s} ${body.timings_ms[s].toFixed(1)}`).join(" · ")})`);
  let how = "";
  if (FUSED.includes(body.mode)) {
    const scores = body.normalization === "none" ? "raw scores" : `scores ${body.normalization}-normalised per query`;
    how = ` · α ${body.alpha.toFixed(2)}, ${scores}`;
    if (body.dense_k) how += `, ${body.candidates} BM25 + ${body.dense_k} dense candidates`;
  }
  setStatus([el("span", "count", count), timings, el("span", "how", how)]);
}

async function search(params) {
  if (pending) pending.abort();
  const controller = new AbortController();
  pending = controller;
  setStatus([el("span", "", "Searching…")]);
  let response, body;
  try {
    response = await fetch(`/v1/search?${params}`, { signal: controller.signal, headers: { Accept: "application/json" } });
    body = await response.json();
  } catch (err) {
    if (!controller.signal.aborted) showError(`The server did not answer properly (${err.message}).`);
    return;
  } finally {
    if (pending === controller) pending = null;
  }
  if (controller.signal.aborted) return;
  if (!response.ok) showError(body?.error?.message ?? `HTTP ${response.status}`);
  else render(body);
}

function submit(event) {
  if (event) event.preventDefault();
  if (!q.value.trim()) {
    q.focus();
    return;
  }
  const params = formParams();
  history.pushState(null, "", `/?${params}`);
  search(params);
}

function restoreFromURL() {
  const params = urlParams();
  if (params.get("q")) search(params);
  else {
    results.replaceChildren();
    setStatus([]);
  }
}

async function loadIndexes() {
  try {
    const response = await fetch("/v1/indexes", { headers: { Accept: "application/json" } });
    const body = await response.json();
    indexes = body.indexes;
    defaults.alpha = String(body.config.alpha);
    defaults.k = String(body.config.default_k);
    k.max = body.config.max_k;
    q.maxLength = body.config.max_query_chars;
    index.replaceChildren(...indexes.map((i) => {
      const option = el("option", "", i.name);
      option.value = i.name;
      if (i.default) defaults.index = i.name;
      return option;
    }));
    index.closest("label").hidden = indexes.length < 2;
    index.value = defaults.index;
  } catch (err) {
    // The page still works with its built-in defaults.
  }
}

form.addEventListener("submit", submit);
for (const radio of form.elements.mode) radio.addEventListener("change", () => { syncControls(); if (q.value.trim()) submit(); });
alpha.addEventListener("input", syncControls);
alpha.addEventListener("change", () => { if (q.value.trim()) submit(); });
index.addEventListener("change", () => { syncControls(); if (q.value.trim()) submit(); });
window.addEventListener("popstate", restoreFromURL);

loadIndexes().then(() => {
  if (window.location.search) restoreFromURL();
  else {
    alpha.value = defaults.alpha;
    k.value = defaults.k;
    syncControls();
  }
  document.body.dataset.ready = "true";
});
