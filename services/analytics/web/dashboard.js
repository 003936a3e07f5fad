// The live dashboard: polls /analytics/dashboard every second and draws it.
// No build step; uPlot (web/vendor) draws the charts.
"use strict";

const POLL_MS = 1000;
const CLASSES = ["bad-magic-byte", "unknown-schema-id", "wrong-subject", "avro-decode", "validation", "empty-value"];
const css = getComputedStyle(document.documentElement);
const color = (name) => css.getPropertyValue(name).trim();

const $ = (id) => document.getElementById(id);

function grouped(digits) {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

function count(n) {
  return grouped(String(Math.round(n)));
}

function euros(v) {
  const [whole, cents] = Math.abs(v).toFixed(2).split(".");
  return (v < 0 ? "-" : "") + "€" + grouped(whole) + "." + cents;
}

// shortEuros labels an axis: €2,000, €15k, €1.2M.
function shortEuros(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return "€" + +(v / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return "€" + +(v / 1e3).toFixed(1) + "k";
  return euros(v).replace(/\.00$/, "");
}

// fit shrinks a tile's number until it fits its tile: a big revenue keeps
// its cents rather than being cut.
function fit(e) {
  e.style.fontSize = "";
  let size = parseFloat(getComputedStyle(e).fontSize);
  while (e.scrollWidth > e.clientWidth && size > 12) {
    size -= 1;
    e.style.fontSize = size + "px";
  }
}

function clock(t) {
  return new Date(t).toLocaleTimeString([], { hour12: false });
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// Charts ---------------------------------------------------------------

function axis(values) {
  return {
    stroke: color("--muted"),
    grid: { stroke: color("--line"), width: 1 },
    ticks: { stroke: color("--line"), width: 1 },
    values,
  };
}

function chart(target, series, yValues) {
  const opts = {
    width: target.clientWidth,
    height: target.clientHeight,
    scales: {
      x: { time: true },
      y: { range: (u, min, max) => [0, Math.max(1, max * 1.15)] },
    },
    axes: [axis(), Object.assign(axis(yValues), { size: 70 })],
    series: [{}].concat(series.map((s) => ({
      label: s.label,
      stroke: s.color,
      width: s.width || 2,
      dash: s.dash,
      fill: s.fill ? s.color + "26" : undefined,
      points: { show: false },
      value: (u, v) => (v == null ? "–" : s.format(v)),
    }))),
    cursor: { points: { size: 6 } },
    legend: { show: false }, // the panel's title names the lines
  };
  const empty = [[]].concat(series.map(() => []));
  const plot = new uPlot(opts, empty, target);
  new ResizeObserver(() => plot.setSize({ width: target.clientWidth, height: target.clientHeight })).observe(target);
  return plot;
}

const revenueChart = chart($("chart-revenue"),
  [{ label: "revenue / min", color: color("--revenue"), fill: true, format: euros }],
  (u, vals) => vals.map(shortEuros));
const ratesChart = chart($("chart-rates"),
  [
    { label: "payments / min", color: color("--payments"), width: 3, format: count },
    { label: "orders / min", color: color("--orders"), dash: [8, 5], format: count },
  ],
  (u, vals) => vals.map((v) => (Number.isInteger(v) ? count(v) : "")));

// Panels ---------------------------------------------------------------

// renderDelivery says what the mail server has not taken yet: the email
// service delivers after the commit, so a mail server that is down or slow
// shows here, with the age of the oldest email waiting.
function renderDelivery(e) {
  const box = $("emails-undelivered");
  const n = (e && e.undelivered) || 0;
  box.dataset.undelivered = String(n);
  box.classList.toggle("waiting", n > 0);
  if (n === 0) {
    box.textContent = e && e.delivered ? "all delivered" + (e.rejected ? ", " + count(e.rejected) + " rejected" : "") : "\u00a0";
    return;
  }
  const age = e.oldest_undelivered_at ? Math.max(0, (Date.now() - new Date(e.oldest_undelivered_at)) / 1000) : 0;
  box.textContent = count(n) + " undelivered, oldest " + (age < 120 ? age.toFixed(0) + " s" : (age / 60).toFixed(0) + " min");
}

// renderEdge shows the payment service's admission: payments refused with
// 503 because the bound was reached, those let in, and the bound now.
function renderEdge(edge) {
  const shed = $("edge-shed"), admitted = $("edge-admitted"), limit = $("edge-limit");
  if (!edge || !edge.instances) {
    shed.textContent = "–";
    admitted.textContent = edge && edge.unreachable ? "payment service not answering" : "\u00a0";
    limit.textContent = "\u00a0";
    return;
  }
  shed.textContent = count(edge.shed) + " shed";
  shed.dataset.shed = String(edge.shed);
  shed.classList.toggle("nonzero", edge.shed > 0);
  admitted.textContent = count(edge.admitted) + " admitted";
  limit.dataset.limit = String(edge.limit);
  limit.textContent = "bound " + count(edge.limit) + ", " + count(edge.in_flight) + " in flight";
}

function renderTiles(a, h, e) {
  const last = h.revenue_per_minute.length - 1;
  $("revenue").textContent = euros(a.total_revenue);
  $("revenue").dataset.value = a.total_revenue.toFixed(2);
  $("revenue-rate").textContent = euros(h.revenue_per_minute[last]) + " in the last minute";
  $("payments").textContent = count(a.total_payments);
  $("payments-rate").textContent = count(a.payments_per_minute) + " / min";
  $("orders").textContent = count(a.total_orders);
  $("orders-rate").textContent = count(a.orders_per_minute) + " / min";
  $("emails").textContent = count(a.total_emails);
  const waiting = a.total_orders - a.total_emails;
  $("emails-pending").textContent = waiting > 0 ? count(waiting) + " orders not confirmed yet" : "one per order";
  renderDelivery(e);
  $("users").textContent = count(a.unique_users);
  $("dlq").textContent = count(a.dlq_messages);
  $("dlq").classList.toggle("nonzero", a.dlq_messages > 0);
  document.querySelectorAll(".tile .value").forEach(fit);
}

function renderDeadLetters(byClass) {
  const classes = CLASSES.concat(Object.keys(byClass || {}).filter((c) => !CLASSES.includes(c)));
  const top = Math.max(1, ...classes.map((c) => (byClass || {})[c] || 0));
  const box = $("dlq-classes");
  box.replaceChildren(...classes.map((c) => {
    const n = (byClass || {})[c] || 0;
    const row = el("div", "bar" + (n === 0 ? " zero" : ""));
    row.dataset.class = c;
    const track = el("div", "track");
    const fill = el("div", "fill");
    fill.style.width = (100 * n / top) + "%";
    track.append(fill);
    row.append(el("span", "name", c), track, el("span", "count", count(n)));
    return row;
  }));
}

// A group that keeps up shows a lag of 0, or 1 on a topic written in
// transactions (the commit marker after the last record); a few more come
// and go with each batch. Hundreds mean the group is falling behind.
function lagClass(lag) {
  if (lag < 0) return "none";
  if (lag < 100) return "ok";
  return lag < 1000 ? "warn" : "bad";
}

function renderGroups(g) {
  const rows = [];
  let width = 0;
  for (const group of g.groups || []) {
    const topics = [...new Set(group.partitions.map((p) => p.topic))].sort();
    if (topics.length === 0) rows.push({ group, topic: "", parts: [] });
    for (const topic of topics) {
      const parts = group.partitions.filter((p) => p.topic === topic);
      width = Math.max(width, ...parts.map((p) => p.partition + 1));
      rows.push({ group, topic, parts });
    }
  }

  const head = el("tr");
  head.append(el("th", "", "group · topic"));
  for (let i = 0; i < width; i++) head.append(el("th", "", "partition " + i));
  head.append(el("th", "total", "lag"));

  const body = rows.map(({ group, topic, parts }) => {
    const tr = el("tr");
    tr.dataset.group = group.group;
    tr.dataset.topic = topic;
    const name = el("td", "group");
    const title = el("div", "name", group.group);
    title.append(el("span", "state " + (group.state || ""), group.state || "unknown"));
    name.append(title, el("div", "topic", topic || group.error || "no partitions assigned or committed yet"));
    tr.append(name);
    for (let i = 0; i < width; i++) {
      const p = parts.find((q) => q.partition === i);
      const td = el("td", "part " + (p ? (p.stalled_since ? "stalled" : lagClass(p.lag)) : "none"));
      if (p) {
        td.dataset.partition = String(i);
        td.dataset.lag = String(p.lag);
        td.append(el("div", "lag", p.lag < 0 ? "?" : count(p.lag)),
          el("div", "who", p.instance || "unassigned"));
        // A stage that retries the same records commits nothing: say so.
        if (p.stalled_since) {
          td.dataset.stalledSince = p.stalled_since;
          td.append(el("div", "stall", "stalled since " + clock(p.stalled_since)));
        }
      }
      tr.append(td);
    }
    const total = parts.reduce((s, p) => s + Math.max(0, p.lag), 0);
    tr.append(el("td", "total", count(total)));
    return tr;
  });

  $("groups").tHead.replaceChildren(head);
  $("groups").tBodies[0].replaceChildren(...body);
  $("groups-note").textContent = g.error
    ? "could not describe the groups: " + g.error
    : g.at ? "as of " + clock(g.at) + ". Lag is the last stable offset minus the committed offset; on a topic written in transactions (order-created) a caught-up group shows 1 per partition: the commit marker. A partition whose committed offset stands still for a minute with records to read is stalled." : "asking the cluster…";
}

// Each exactly-once instance's producer as its transaction coordinator
// sees it. Under transactions version 2 (Kafka 4) the epoch moves at every
// transaction's end; a restart or a re-initialised producer shows in the
// stages' recoveries.
function renderProducers(list) {
  const rows = (list || []).map((p) => {
    const tr = el("tr");
    tr.dataset.producer = p.transactional_id;
    const open = p.open_since ? Math.max(0, (Date.now() - new Date(p.open_since)) / 1000).toFixed(1) + " s" : "–";
    tr.append(el("td", "group", p.transactional_id), el("td", "", p.state), el("td", "", String(p.epoch)),
      el("td", "", open));
    return tr;
  });
  $("producers").tBodies[0].replaceChildren(...rows);
}

// renderCoverage says which analytics instance holds which partitions,
// and, while the figures lack a partition (its holder died, the group
// rebalances), which one and why: the figures are then not the shop's.
function renderCoverage(a) {
  const box = $("coverage");
  box.dataset.complete = String(!!a.complete);
  box.classList.toggle("partial", !a.complete);
  const held = (a.instances || []).map((i) =>
    i.instance + " holds " + (i.partitions.length ? i.partitions.map((p) => p.partition).join(", ") : "nothing it could show"));
  const missing = (a.missing_partitions || []).map((p) =>
    "partition " + p + " missing: " + ((a.missing_because || {})[String(p)] || "no holder"));
  box.textContent = "analytics-service-group: " + (held.join(" · ") || "no instance holds a partition") +
    (missing.length ? " — " + missing.join("; ") : " — all " + a.partitions + " partitions counted");
}

function renderCharts(h) {
  revenueChart.setData([h.time, h.revenue_per_minute]);
  ratesChart.setData([h.time, h.payments_per_minute, h.orders_per_minute]);
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status-text").textContent = text;
}

async function poll() {
  try {
    const resp = await fetch("/analytics/dashboard", { cache: "no-store" });
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    const d = await resp.json();
    renderTiles(d.analytics, d.history, d.emails);
    renderCharts(d.history);
    renderCoverage(d.analytics);
    renderDeadLetters(d.analytics.dlq_by_class);
    renderGroups(d.groups);
    renderProducers(d.producers);
    renderEdge(d.edge);
    const last = d.analytics.last_updated ? " · last event " + clock(d.analytics.last_updated) : "";
    setStatus("live", "live · updated " + clock(d.now) + last);
  } catch (err) {
    setStatus("down", "disconnected (" + err.message + "), retrying…");
  }
  setTimeout(poll, POLL_MS);
}

poll();
