// croo dashboard: plain JavaScript and SVG, no dependencies, no network
// beyond this server's /v1 routes.
"use strict";

const KEY = "croo.key";
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path) {
  const key = sessionStorage.getItem(KEY);
  const r = await fetch(path, { headers: { Authorization: "Bearer " + key } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    const e = body.error || {};
    throw new ApiError(r.status, e.code || "error", e.message || r.statusText);
  }
  return body;
}

function fmt(x, digits = 2) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
}

function signed(x) {
  if (x === null || x === undefined) return "–";
  return (x >= 0 ? "+" : "") + fmt(x);
}

function el(name, attrs, parent, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

function clear(svg) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
}

function scale(lo, hi, a, b) {
  if (hi === lo) { hi = lo + 1; lo = lo - 1; }
  return (v) => a + ((v - lo) / (hi - lo)) * (b - a);
}

function drawTrend(rows) {
  const svg = $("trend");
  clear(svg);
  const pts = rows.filter((r) => r.score !== null);
  if (pts.length === 0) { el("text", { x: 20, y: 30 }, svg, "no scores yet"); return; }
  const ys = pts.map((r) => r.score);
  const x = scale(0, Math.max(rows.length - 1, 1), 50, 620);
  const y = scale(Math.min(...ys), Math.max(...ys), 220, 20);
  el("line", { class: "axis", x1: 50, y1: 230, x2: 620, y2: 230 }, svg);
  let d = "";
  rows.forEach((r, i) => {
    if (r.score === null) return;
    d += (d ? " L" : "M") + x(i).toFixed(1) + " " + y(r.score).toFixed(1);
  });
  el("path", { class: "line", d }, svg);
  rows.forEach((r, i) => {
    // A fiscal calendar's name (FY2027-Q1) where the formula has one.
    el("text", { x: x(i), y: 248, "text-anchor": "middle" }, svg, r.period_label || r.period.slice(0, 7));
    if (r.score === null) return;
    const c = el("circle", { class: "point", cx: x(i), cy: y(r.score), r: 4,
      "data-period": r.period, "data-score": String(r.score) }, svg);
    el("title", {}, c, r.period + (r.period_label ? " (" + r.period_label + ")" : "") + ": " + fmt(r.score));
    el("text", { x: x(i), y: y(r.score) - 8, "text-anchor": "middle", class: "score-label" }, svg, fmt(r.score, 1));
  });
}

function drawBreakdown(rows) {
  const svg = $("breakdown");
  clear(svg);
  if (rows.length === 0) { el("text", { x: 20, y: 30 }, svg, "no groups"); return; }
  const max = Math.max(...rows.map((r) => Math.abs(r.score || 0)), 1e-9);
  const h = Math.min(36, 230 / rows.length);
  rows.forEach((r, i) => {
    const w = r.score === null ? 0 : (Math.abs(r.score) / max) * 440;
    const top = 10 + i * h;
    el("text", { x: 110, y: top + h * 0.65, "text-anchor": "end" }, svg, r.value === null ? "(none)" : r.value);
    el("rect", { class: "bar", x: 120, y: top + 2, width: w.toFixed(1), height: (h - 6).toFixed(1),
      "data-value": r.value === null ? "" : r.value, "data-score": r.score === null ? "" : String(r.score) }, svg);
    el("text", { x: 126 + w, y: top + h * 0.65 }, svg, fmt(r.score, 1) + "  (" + r.included + " customers)");
  });
}

function drawWaterfall(row) {
  const svg = $("waterfall");
  clear(svg);
  const comps = Object.entries(row.components || {});
  const usable = comps.filter(([, c]) => c.contribution !== null);
  if (usable.length === 0) { el("text", { x: 20, y: 30 }, svg, "contributions need the default weighted sum"); return; }
  let run = 0;
  const steps = usable.map(([name, c]) => { const s = { name, from: run, to: run + c.contribution, c: c.contribution }; run += c.contribution; return s; });
  const all = steps.flatMap((s) => [s.from, s.to]).concat([0, row.score || 0]);
  const y = scale(Math.min(...all), Math.max(...all), 220, 20);
  const n = steps.length + 1;
  const bw = 540 / n;
  steps.forEach((s, i) => {
    const x0 = 60 + i * bw;
    const top = y(Math.max(s.from, s.to));
    const height = Math.max(Math.abs(y(s.from) - y(s.to)), 1);
    el("rect", { class: s.c >= 0 ? "up" : "down", x: x0 + 4, y: top, width: bw - 8, height,
      "data-component": s.name, "data-contribution": String(s.c) }, svg);
    el("text", { x: x0 + bw / 2, y: top - 4, "text-anchor": "middle" }, svg, signed(s.c));
    el("text", { x: x0 + bw / 2, y: 248, "text-anchor": "middle" }, svg, s.name);
  });
  const x0 = 60 + steps.length * bw;
  const total = row.score === null ? run : row.score;
  el("rect", { class: "total", x: x0 + 4, y: y(Math.max(total, 0)), width: bw - 8,
    height: Math.max(Math.abs(y(0) - y(total)), 1), "data-total": String(total) }, svg);
  el("text", { x: x0 + bw / 2, y: y(Math.max(total, 0)) - 4, "text-anchor": "middle" }, svg, fmt(total));
  el("text", { x: x0 + bw / 2, y: 248, "text-anchor": "middle" }, svg, "score");
  el("line", { class: "axis", x1: 55, y1: y(0), x2: 620, y2: y(0) }, svg);
}

function drawMoved(ex) {
  const body = $("moved").querySelector("tbody");
  body.textContent = "";
  const add = (cells, cls) => {
    const tr = document.createElement("tr");
    cells.forEach((c, i) => {
      const td = document.createElement("td");
      td.textContent = c;
      if (i === 3 && cls) td.className = cls;
      tr.appendChild(td);
    });
    body.appendChild(tr);
    return tr;
  };
  for (const c of ex.components || []) {
    const tr = add([c.component, fmt(c.before), fmt(c.after), signed(c.change)],
      c.change > 0 ? "pos" : c.change < 0 ? "neg" : "");
    tr.dataset.component = c.component;
    tr.dataset.change = c.change === null ? "" : String(c.change);
  }
  add(["score", fmt(ex.score_before), fmt(ex.score), signed(ex.change)], ex.change > 0 ? "pos" : "neg");
}

let formulas = [];

async function loadFormulas() {
  const list = await api("/v1/formulas");
  formulas = list.formulas;
  const sel = $("formula");
  sel.textContent = "";
  for (const f of formulas) {
    const o = document.createElement("option");
    o.value = f.name;
    o.textContent = f.name + " " + f.version;
    sel.appendChild(o);
  }
  if (formulas.length === 0) throw new ApiError(404, "not_found", "no formulas are served");
  fillDimensions();
}

function fillDimensions() {
  const f = formulas.find((x) => x.name === $("formula").value) || formulas[0];
  const sel = $("dimension");
  const keep = sel.value;
  sel.textContent = "";
  for (const d of f.dimensions) {
    const o = document.createElement("option");
    o.value = d;
    o.textContent = d;
    sel.appendChild(o);
  }
  if (f.dimensions.includes(keep)) sel.value = keep;
}

async function render() {
  const f = $("formula").value;
  const dim = $("dimension").value;
  const base = "/v1/formulas/" + encodeURIComponent(f);
  $("status").textContent = "";
  // A key scoped to some groups cannot read the whole population: show
  // its groups instead.
  let series, scoped = null;
  try {
    series = (await api(base + "/scores")).results;
  } catch (e) {
    if (e.status !== 403) throw e;
    const dims = formulas.find((x) => x.name === f).dimensions;
    for (const d of [dim].concat(dims)) {
      try { series = (await api(base + "/scores?by=" + encodeURIComponent(d))).results; scoped = d; break; } catch (e2) { if (e2.status !== 403) throw e2; }
    }
    if (!series) throw e;
  }
  const first = scoped ? series.filter((r) => r.value === series[0]?.value) : series;
  $("scope").textContent = scoped ? scoped + " = " + (first[0]?.value ?? "–") : "whole population";
  drawTrend(first);
  $("content").hidden = false;
  if (first.length === 0) { $("status").textContent = "No results yet for " + f + "."; return; }
  const latest = first[first.length - 1];
  const prev = first.length > 1 ? first[first.length - 2] : null;
  $("latest-score").textContent = fmt(latest.score);
  $("latest-score").dataset.score = String(latest.score);
  $("latest-period").textContent = latest.period + (latest.period_label ? " · " + latest.period_label : "");
  // The period's state in words (open, provisional, final) and its edition.
  $("latest-state").textContent = latest.state
    ? latest.state + (latest.edition ? " · edition " + latest.edition : "")
    : "–";
  $("latest-state").dataset.state = latest.state || "";
  // The status against the targets, in words (the colour only repeats it).
  $("latest-status").textContent = latest.status ? latest.status.replace(/_/g, " ") : "no target";
  $("latest-status").dataset.status = latest.status || "";
  $("latest-change").textContent = prev ? signed(latest.score - prev.score) : "–";
  $("dim-name").textContent = scoped || dim;
  const period = await api(base + "/scores/" + latest.period + "?by=" + encodeURIComponent(scoped || dim));
  drawBreakdown(period.results.filter((r) => r.dimension !== null));
  drawWaterfall(latest);
  if (prev) {
    const q = "?period=" + latest.period + "&compare=" + prev.period +
      (scoped ? "&group=" + encodeURIComponent(scoped + "=" + latest.value) : "");
    drawMoved(await api(base + "/explain" + q));
  }
}

async function start() {
  try {
    await loadFormulas();
    $("login").hidden = true;
    $("signout").hidden = false;
    await render();
  } catch (e) {
    if (e.status === 401) {
      sessionStorage.removeItem(KEY);
      showLogin(e.message);
    } else {
      $("status").textContent = e.message;
    }
  }
}

function showLogin(message) {
  $("content").hidden = true;
  $("login").hidden = false;
  $("signout").hidden = true;
  $("login-error").textContent = message || "";
  $("key").focus();
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(KEY, $("key").value.trim());
  $("key").value = "";
  start();
});
$("signout").addEventListener("click", () => { sessionStorage.removeItem(KEY); showLogin(); });
$("formula").addEventListener("change", () => { fillDimensions(); render().catch((e) => { $("status").textContent = e.message; }); });
$("dimension").addEventListener("change", () => render().catch((e) => { $("status").textContent = e.message; }));

if (sessionStorage.getItem(KEY)) start(); else showLogin();
