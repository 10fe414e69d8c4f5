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

const H = 280;

// Charts are drawn in CSS pixels: the viewBox follows the width the chart
// is shown at, so a 13px label is read at 13px on a phone or a wide screen.
function canvas(id) {
  const svg = $(id);
  clear(svg);
  const w = Math.max(Math.round(svg.getBoundingClientRect().width) || 640, 280);
  svg.setAttribute("viewBox", "0 0 " + w + " " + H);
  return { svg, w };
}

// About four round values between lo and hi.
function ticks(lo, hi) {
  if (hi === lo) { hi = lo + 1; lo = lo - 1; }
  const raw = (hi - lo) / 4;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) out.push(v);
  return { values: out, lo: Math.min(lo, out[0] ?? lo), hi: Math.max(hi, out[out.length - 1] ?? hi), digits: step < 1 ? 2 : step < 10 ? 1 : 0 };
}

// A value axis at x = left, with light grid lines to `right`.
function valueAxis(svg, t, y, left, right) {
  for (const v of t.values) {
    el("line", { class: "grid-line", x1: left, y1: y(v), x2: right, y2: y(v) }, svg);
    el("text", { class: "tick", x: left - 6, y: y(v) + 4, "text-anchor": "end" }, svg, v.toFixed(t.digits));
  }
}

// Labels of a category axis, every k-th one when they would overlap.
function categoryLabels(svg, labels, x, y, room) {
  const longest = Math.max(...labels.map((l) => l.length), 1);
  const width = longest * 7.5 + 8;
  const every = Math.max(1, Math.ceil(width / Math.max(room, 1)));
  labels.forEach((l, i) => {
    if (i % every !== 0 && i !== labels.length - 1) return;
    if (i === labels.length - 1 && i % every !== 0 && (i % every) < every / 2) return;
    el("text", { x: x(i), y, "text-anchor": "middle" }, svg, l);
  });
}

function drawTrend(rows) {
  const { svg, w } = canvas("trend");
  const pts = rows.filter((r) => r.score !== null);
  if (pts.length === 0) { el("text", { x: 20, y: 30 }, svg, "no scores yet"); return; }
  const ys = pts.map((r) => r.score);
  const t = ticks(Math.min(...ys), Math.max(...ys));
  const left = 56, right = w - 28;
  const x = scale(0, Math.max(rows.length - 1, 1), left + 24, right - 8);
  const y = scale(t.lo, t.hi, H - 48, 28);
  valueAxis(svg, t, y, left, right);
  el("line", { class: "axis", x1: left, y1: H - 40, x2: right, y2: H - 40 }, svg);
  let d = "";
  rows.forEach((r, i) => {
    if (r.score === null) return;
    d += (d ? " L" : "M") + x(i).toFixed(1) + " " + y(r.score).toFixed(1);
  });
  el("path", { class: "line", d }, svg);
  // A fiscal calendar's name (FY2027-Q1) where the formula has one.
  const labels = rows.map((r) => r.period_label || r.period.slice(0, 7));
  categoryLabels(svg, labels, x, H - 20, rows.length > 1 ? x(1) - x(0) : w);
  rows.forEach((r, i) => {
    if (r.score === null) return;
    // Open and provisional periods may still change: hollow points.
    const settled = !r.state || r.state === "final";
    const c = el("circle", { class: "point" + (settled ? "" : " hollow"), cx: x(i), cy: y(r.score), r: 5,
      "data-period": r.period, "data-score": String(r.score), "data-state": r.state || "" }, svg);
    el("title", {}, c, r.period + (r.period_label ? " (" + r.period_label + ")" : "") + ": " + fmt(r.score) +
      (r.state ? " · " + r.state : ""));
  });
}

function drawBreakdown(rows) {
  const { svg, w } = canvas("breakdown");
  if (rows.length === 0) { el("text", { x: 20, y: 30 }, svg, "no groups"); return; }
  const names = rows.map((r) => (r.value === null ? "(none)" : r.value));
  const values = rows.map((r) => fmt(r.score, 1) + " (" + r.included + ")");
  // Room for the longest name and the longest value label: nothing cut.
  const nameW = Math.min(Math.max(...names.map((n) => n.length)) * 7.5 + 12, w * 0.35);
  const valueW = Math.max(...values.map((v) => v.length)) * 7.5 + 12;
  const left = nameW + 8;
  const barMax = Math.max(w - left - valueW - 8, 40);
  const max = Math.max(...rows.map((r) => Math.abs(r.score || 0)), 1e-9);
  const h = Math.min(36, (H - 30) / rows.length);
  rows.forEach((r, i) => {
    const bw = r.score === null ? 0 : (Math.abs(r.score) / max) * barMax;
    const top = 8 + i * h;
    el("text", { x: nameW, y: top + h * 0.62, "text-anchor": "end" }, svg, names[i]);
    el("rect", { class: "bar", x: left, y: top + 2, width: bw.toFixed(1), height: (h - 6).toFixed(1),
      "data-value": r.value === null ? "" : r.value, "data-score": r.score === null ? "" : String(r.score) }, svg);
    el("text", { x: left + bw + 6, y: top + h * 0.62 }, svg, values[i]);
  });
  el("text", { class: "tick", x: left, y: H - 6 }, svg, "score (customers included)");
}

function drawWaterfall(row) {
  const { svg, w } = canvas("waterfall");
  const comps = Object.entries(row.components || {});
  const usable = comps.filter(([, c]) => c.contribution !== null);
  if (usable.length === 0) { el("text", { x: 20, y: 30 }, svg, "contributions need the default weighted sum"); return; }
  let run = 0;
  const steps = usable.map(([name, c]) => { const s = { name, from: run, to: run + c.contribution, c: c.contribution }; run += c.contribution; return s; });
  const all = steps.flatMap((s) => [s.from, s.to]).concat([0, row.score || 0]);
  const t = ticks(Math.min(...all), Math.max(...all));
  const left = 56, right = w - 12;
  const y = scale(t.lo, t.hi, H - 48, 28);
  valueAxis(svg, t, y, left, right);
  const n = steps.length + 1;
  const bw = (right - left - 8) / n;
  const labelAt = (x0) => x0 + bw / 2;
  steps.forEach((s, i) => {
    const x0 = left + 8 + i * bw;
    const top = y(Math.max(s.from, s.to));
    const height = Math.max(Math.abs(y(s.from) - y(s.to)), 1);
    el("rect", { class: s.c >= 0 ? "up" : "down", x: x0 + 4, y: top, width: Math.max(bw - 8, 2), height,
      "data-component": s.name, "data-contribution": String(s.c) }, svg);
    el("text", { x: labelAt(x0), y: Math.max(top - 4, 14), "text-anchor": "middle" }, svg, signed(s.c));
  });
  const x0 = left + 8 + steps.length * bw;
  const total = row.score === null ? run : row.score;
  el("rect", { class: "total", x: x0 + 4, y: y(Math.max(total, 0)), width: Math.max(bw - 8, 2),
    height: Math.max(Math.abs(y(0) - y(total)), 1), "data-total": String(total) }, svg);
  el("text", { x: labelAt(x0), y: Math.max(y(Math.max(total, 0)) - 4, 14), "text-anchor": "middle" }, svg, fmt(total));
  el("line", { class: "axis", x1: left, y1: y(0), x2: right, y2: y(0) }, svg);
  const names = steps.map((s) => s.name).concat(["score"]);
  categoryLabels(svg, names, (i) => labelAt(left + 8 + i * bw), H - 20, bw);
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
  $("content").hidden = false;
  drawTrend(first);
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
  const groups = period.results.filter((r) => r.dimension !== null);
  drawBreakdown(groups);
  drawWaterfall(latest);
  view = { base, latest, first, groups, scoped, dim: scoped || dim };
  if (prev) {
    const q = "?period=" + latest.period + "&compare=" + prev.period +
      (scoped ? "&group=" + encodeURIComponent(scoped + "=" + latest.value) : "");
    drawMoved(await api(base + "/explain" + q));
  }
  fillGroups($("status-group"));
  await renderTargets();
  fillCustomerSort(latest);
  customers = { cursors: [null], page: 0 };
  await renderCustomers();
  await renderExperiments();
}

// Stored experiment reports (croo experiment): each treatment arm's lift,
// overall and per group, with guardrails.
async function renderExperiments() {
  const panel = $("experiments");
  let list;
  try {
    list = (await api(view.base + "/experiments")).experiments;
  } catch (e) {
    panel.hidden = true;
    return;
  }
  if (list.length === 0) { panel.hidden = true; return; }
  panel.hidden = false;
  const sel = $("experiment");
  const keep = sel.value;
  sel.textContent = "";
  for (const x of list) {
    const o = document.createElement("option");
    o.value = x.experiment;
    o.textContent = x.experiment;
    sel.appendChild(o);
  }
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
  const r = await api(view.base + "/experiments/" + encodeURIComponent(sel.value));
  $("experiment-note").textContent = "control `" + r.control + "`, " + r.periods.length + " periods" +
    (r.srm && !r.srm.valid ? " · SAMPLE RATIO MISMATCH: not valid" : "");
  const body = $("experiment-table").querySelector("tbody");
  body.textContent = "";
  for (const a of r.arms) {
    const guards = Object.fromEntries((a.guardrails || []).map((g) => [g.group, g.result]));
    const rows = [];
    if (a.overall) rows.push(["all", a.overall.lift, a.overall.lift.p]);
    for (const g of a.groups || []) rows.push([g.dimension + "=" + g.value, g.lift, g.p_holm]);
    for (const [group, l, p] of rows) {
      const tr = document.createElement("tr");
      tr.dataset.arm = a.arm;
      tr.dataset.group = group;
      tr.dataset.lift = String(l.absolute);
      const cells = [a.arm, group, fmt(l.control), fmt(l.treatment), signed(l.absolute),
        "[" + fmt(l.lower) + ", " + fmt(l.upper) + "]", fmt(p, 4), guards[group] || "–"];
      cells.forEach((c, i) => {
        const td = document.createElement("td");
        td.textContent = c;
        if (i === 4) td.className = l.lower > 0 ? "pos" : l.upper < 0 ? "neg" : "";
        tr.appendChild(td);
      });
      body.appendChild(tr);
    }
  }
}

// What the panels below the charts read: set by render().
let view = null;
let customers = { cursors: [null], page: 0 };

// The group the status tiles and the customers table show: the key's own
// group when it is scoped, else the whole population or one chosen group.
function fillGroups(sel) {
  const keep = sel.value;
  sel.textContent = "";
  const opts = view.scoped ? [] : [["", "whole population"]];
  for (const g of view.groups) {
    if (g.value === null) continue;
    opts.push([view.dim + "=" + g.value, view.dim + " = " + g.value]);
  }
  for (const [v, t] of opts) {
    const o = document.createElement("option");
    o.value = v;
    o.textContent = t;
    sel.appendChild(o);
  }
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
}

async function renderTargets() {
  const panel = $("targets");
  let doc;
  try {
    doc = await api(view.base + "/status?period=" + view.latest.period);
  } catch (e) {
    if (e.status === 404 || e.status === 422 || e.status === 403) { panel.hidden = true; return; }
    throw e;
  }
  panel.hidden = false;
  $("targets-version").textContent = "targets " + doc.targets_version;
  const sel = $("status-group");
  const [d, v] = sel.value ? sel.value.split(/=(.*)/s) : [null, null];
  const g = doc.groups.find((x) => (x.dimension ?? null) === d && (x.value ?? null) === v);
  const tiles = $("tiles");
  tiles.textContent = "";
  const items = g ? g.items : [];
  if (items.length === 0) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "No target for this group in " + view.latest.period + ".";
    tiles.appendChild(p);
    return;
  }
  for (const it of items) {
    const t = document.createElement("div");
    t.className = "tile";
    t.dataset.for = it.for;
    t.dataset.status = it.status;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = it.for === "score" ? "Score" : it.for.replace(/^component\./, "");
    const st = document.createElement("span");
    st.className = "status";
    st.dataset.status = it.status;
    st.textContent = it.status.replace(/_/g, " ");
    const det = document.createElement("span");
    det.className = "detail";
    det.textContent = fmt(it.actual) + " against " + fmt(it.target) + " (baseline " + fmt(it.baseline) +
      ", " + it.direction + " is better) · achievement " + (it.achievement === null ? "–" : Math.round(it.achievement * 100) + "%");
    t.append(name, st, det);
    tiles.appendChild(t);
  }
}

function fillCustomerSort(latest) {
  const sel = $("customer-sort");
  const keep = sel.value;
  sel.textContent = "";
  const opts = [["score", "lowest score first"], ["-score", "highest score first"],
    ["change", "fallen most since the previous period"], ["-change", "risen most since the previous period"]];
  for (const c of Object.keys(latest.components || {})) {
    opts.push(["-contribution." + c, "largest contribution to " + c]);
    opts.push(["contribution." + c, "smallest contribution to " + c]);
  }
  for (const [v, t] of opts) {
    const o = document.createElement("option");
    o.value = v;
    o.textContent = t;
    sel.appendChild(o);
  }
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
}

const PAGE = 20;

// Empties a table, gives it these column headers, returns its body.
function resetTable(table, headers) {
  const head = table.querySelector("thead");
  head.textContent = "";
  const hr = document.createElement("tr");
  for (const h of headers) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = h;
    hr.appendChild(th);
  }
  head.appendChild(hr);
  const body = table.querySelector("tbody");
  body.textContent = "";
  return body;
}

// One text cell per value, appended to the row.
function addCells(tr, values) {
  for (const v of values) {
    const td = document.createElement("td");
    td.textContent = v;
    tr.appendChild(td);
  }
}

async function renderCustomers() {
  const group = $("status-group").value;
  const cursor = customers.cursors[customers.page];
  const q = "?period=" + view.latest.period + "&limit=" + PAGE + "&sort=" + encodeURIComponent($("customer-sort").value) +
    (group ? "&group=" + encodeURIComponent(group) : "") + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
  const table = $("customer-table");
  let doc;
  try {
    doc = await api(view.base + "/customers" + q);
  } catch (e) {
    if (e.status !== 400 && e.status !== 404) throw e;
    table.querySelector("thead").textContent = "";
    table.querySelector("tbody").textContent = "";
    $("customer-count").textContent = "";
    $("customer-note").textContent = e.message.includes("--detail")
      ? "The store has no per-customer rows for this period: run it with --detail to see them."
      : e.message;
    $("customer-prev").disabled = true;
    $("customer-next").disabled = true;
    return;
  }
  $("customer-note").textContent = "";
  const comps = Object.keys(view.latest.components || {});
  const body = resetTable(table, ["customer", "score", "change", "included"].concat(comps.map((c) => c + " (contribution)")));
  for (const c of doc.customers) {
    const tr = document.createElement("tr");
    tr.dataset.key = c.key;
    const td0 = document.createElement("td");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "linkish";
    b.textContent = c.key;
    b.setAttribute("aria-label", "history of customer " + c.key);
    b.addEventListener("click", () => renderHistory(c.key).catch((e) => { $("status").textContent = e.message; }));
    td0.appendChild(b);
    tr.appendChild(td0);
    const cells = [fmt(c.score), c.change === undefined ? "–" : signed(c.change), c.included ? "yes" : "no"]
      .concat(comps.map((n) => fmt(c.components[n]?.contribution ?? c.components[n]?.value)));
    addCells(tr, cells);
    body.appendChild(tr);
  }
  const from = customers.page * PAGE;
  $("customer-count").textContent = doc.total === 0 ? "no customers"
    : (from + 1) + "–" + (from + doc.customers.length) + " of " + doc.total;
  customers.cursors[customers.page + 1] = doc.next;
  $("customer-prev").disabled = customers.page === 0;
  $("customer-next").disabled = !doc.next;
}

async function renderHistory(key) {
  const doc = await api(view.base + "/customers/" + encodeURIComponent(key));
  $("customer-history").hidden = false;
  $("history-key").textContent = key;
  const table = $("history-table");
  const comps = Object.keys(doc.periods[0]?.components || {});
  const measures = Object.keys(doc.periods[0]?.measures || {});
  const body = resetTable(table, ["period", "score", "included"].concat(comps, measures));
  for (const p of doc.periods) {
    const tr = document.createElement("tr");
    tr.dataset.period = p.period;
    const cells = [p.period_label || p.period, fmt(p.score), p.included ? "yes" : "no"]
      .concat(comps.map((c) => fmt(p.components[c]?.value, 3)), measures.map((m) => fmt(p.measures[m])));
    addCells(tr, cells);
    body.appendChild(tr);
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
const fail = (e) => { $("status").textContent = e.message; };
$("status-group").addEventListener("change", () => {
  customers = { cursors: [null], page: 0 };
  renderTargets().then(renderCustomers).catch(fail);
});
$("customer-sort").addEventListener("change", () => { customers = { cursors: [null], page: 0 }; renderCustomers().catch(fail); });
$("experiment").addEventListener("change", () => renderExperiments().catch(fail));
$("customer-next").addEventListener("click", () => { customers.page += 1; renderCustomers().catch(fail); });
$("customer-prev").addEventListener("click", () => { customers.page = Math.max(0, customers.page - 1); renderCustomers().catch(fail); });
// Charts are drawn at the width they are shown: redraw when it changes.
let resized = null;
window.addEventListener("resize", () => {
  clearTimeout(resized);
  resized = setTimeout(() => {
    if (!view) return;
    drawTrend(view.first);
    drawBreakdown(view.groups);
    drawWaterfall(view.latest);
  }, 150);
});

if (sessionStorage.getItem(KEY)) start(); else showLogin();
