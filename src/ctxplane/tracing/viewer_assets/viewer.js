// ctxplane trace viewer. Plain JavaScript, no libraries, no network.
//
// The data (embedded as JSON by ctxplane.tracing.viewer) is already laid out: per trace,
// lanes (one per execution unit, grouped by service and process), events sorted by lane then
// time (microseconds on one aligned timeline), spans with their nesting row, cross-EU edges
// and the critical path. This script only draws what is visible: events and spans on a canvas
// (bisection per visible lane, at most one event per pixel), edges as SVG paths in an overlay,
// lane names as DOM labels. Strings from the trace reach the DOM through textContent only.
"use strict";

(function () {
  const DATA = JSON.parse(document.getElementById("ctxplane-data").textContent);
  const EDGE_KINDS = DATA.edge_kinds;          // ["sequence", "fork", "join", "cross-service"]
  const EVENT_TYPES = DATA.event_types;
  const STATUS = ["unset", "ok", "error", "open"];

  // geometry (CSS pixels)
  const GROUP_H = 22;   // service / process header row
  const EVENT_H = 18;   // the row of a lane that holds its events
  const SPAN_H = 16;    // one row of spans
  const LANE_PAD = 6;
  const EVENT_R = 3.5;

  // colours: events by type; spans by service; edges as in viewer.css
  const TYPE_COLOUR = {
    start: "#1d2330", end: "#1d2330", fork: "#2e9d5b", join: "#3b6fd8", send: "#e08a1e",
    receive: "#e08a1e", "span-start": "#8a91a0", "span-end": "#8a91a0", user: "#7b4fc9",
  };
  const CRITICAL = "#e0245e";
  const EDGE_CAP = 4000;  // edges beyond this many in view are drawn on the canvas instead

  const $ = (id) => document.getElementById(id);
  const plotArea = $("plot-area"), plot = $("plot"), axis = $("axis");
  const edgeLayer = $("edge-layer"), labels = $("labels"), details = $("details");

  let T = null;          // the selected trace's data
  let laneY = [];        // top of each lane (content coordinates)
  let laneH = [];        // height of each lane
  let groupY = [];       // top of each group header
  let laneFirst = [];    // index of each lane's first event
  let laneLast = [];     // one past its last event
  let laneSpans = [];    // span indices per lane, sorted by start
  let contentH = 0;
  const view = { t0: 0, t1: 1, scrollY: 0, selected: null };
  let frame = 0;

  // ---- formatting ------------------------------------------------------------------------

  function fmtDuration(us) {
    if (us < 1) return (us * 1000).toFixed(0) + " ns";
    if (us < 1000) return us.toFixed(us < 10 ? 2 : 1) + " \u00b5s";
    if (us < 1e6) return (us / 1000).toFixed(us < 1e4 ? 2 : 1) + " ms";
    return (us / 1e6).toFixed(2) + " s";
  }

  function serviceHue(name) {
    let h = 0;
    for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return h % 360;
  }

  // ---- the trace list -------------------------------------------------------------------

  function buildTraceList() {
    const list = $("trace-list");
    DATA.traces.forEach((trace, i) => {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.className = "trace-item";
      button.dataset.trace = trace.id;
      const tid = document.createElement("div");
      tid.className = "tid";
      tid.textContent = trace.id.slice(0, 16);
      const meta = document.createElement("div");
      meta.className = "meta";
      meta.textContent = `${trace.events.t.length} events \u00b7 ${trace.lanes.length} EUs \u00b7 ` +
        `${fmtDuration(trace.duration)}\n${trace.services.join(", ")}`;
      button.append(tid, meta);
      button.addEventListener("click", () => select(i));
      li.append(button);
      list.append(li);
    });
  }

  // ---- selecting a trace: precompute lane geometry and per-lane indexes ---------------

  function select(i) {
    T = DATA.traces[i];
    document.querySelectorAll(".trace-item").forEach((b, j) => b.classList.toggle("selected", j === i));
    const lanes = T.lanes, ev = T.events;
    laneY = new Array(lanes.length); laneH = new Array(lanes.length);
    groupY = new Array(T.groups.length);
    let y = 0;
    T.groups.forEach((g, gi) => {
      groupY[gi] = y; y += GROUP_H;
      for (let l = g.first; l < g.first + g.count; l++) {
        laneY[l] = y;
        laneH[l] = EVENT_H + lanes[l].rows * SPAN_H + LANE_PAD;
        y += laneH[l];
      }
    });
    contentH = y;
    laneFirst = new Array(lanes.length).fill(0);
    laneLast = new Array(lanes.length).fill(0);
    for (let k = ev.lane.length - 1; k >= 0; k--) laneFirst[ev.lane[k]] = k;
    for (let k = 0; k < ev.lane.length; k++) laneLast[ev.lane[k]] = k + 1;
    laneSpans = lanes.map(() => []);
    T.spans.lane.forEach((l, s) => laneSpans[l].push(s));
    laneSpans.forEach((list) => list.sort((a, b) => T.spans.t0[a] - T.spans.t0[b]));
    $("trace-title").textContent = `trace ${T.id}`;
    $("summary").textContent =
      `${ev.t.length} events in ${lanes.length} execution units of ${T.services.length} ` +
      `service(s) (${T.services.join(", ")}) \u00b7 duration ${fmtDuration(T.duration)} \u00b7 ` +
      `critical path: ${T.critical.events.length} events, ${fmtDuration(T.critical.duration)}`;
    view.selected = null;
    view.scrollY = 0;
    fit();
    showHint();
  }

  function fit() {
    const span = T.duration > 0 ? T.duration : 1;
    view.t0 = -span * 0.01;
    view.t1 = span * 1.02;
    redraw();
  }

  // ---- coordinates ------------------------------------------------------------------------

  function plotWidth() { return plotArea.clientWidth; }
  function plotHeight() { return plotArea.clientHeight; }
  function xOf(t) { return (t - view.t0) / (view.t1 - view.t0) * plotWidth(); }
  function tOf(x) { return view.t0 + x / plotWidth() * (view.t1 - view.t0); }
  function eventY(k) { return laneY[T.events.lane[k]] + EVENT_H / 2 - view.scrollY; }
  function spanY(s) {
    return laneY[T.spans.lane[s]] + EVENT_H + T.spans.depth[s] * SPAN_H - view.scrollY;
  }

  // first index in [lo, hi) of the sorted array `arr` whose value is >= v
  function lowerBound(arr, lo, hi, v) {
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (arr[mid] < v) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  // lanes intersecting the visible band [scrollY, scrollY + height]
  function visibleLanes() {
    const top = view.scrollY, bottom = view.scrollY + plotHeight();
    let first = 0, last = laneY.length;
    first = Math.max(0, lowerBound(laneY, 0, laneY.length, top) - 1);
    last = lowerBound(laneY, 0, laneY.length, bottom);
    return [first, Math.min(laneY.length, last)];
  }

  // ---- drawing ----------------------------------------------------------------------------

  function sizeCanvas(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return ctx;
  }

  function redraw() {
    if (!frame) frame = requestAnimationFrame(draw);
  }

  function draw() {
    frame = 0;
    if (!T) return;
    const maxScroll = Math.max(0, contentH - plotHeight() + 20);
    view.scrollY = Math.min(Math.max(0, view.scrollY), maxScroll);
    const [first, last] = visibleLanes();
    drawAxis();
    const ctx = sizeCanvas(plot);
    ctx.clearRect(0, 0, plot.clientWidth, plot.clientHeight);
    drawLanes(ctx, first, last);
    drawSpans(ctx, first, last);
    const edges = drawEdges(ctx, first, last);
    const events = drawEvents(ctx, first, last);
    drawLabels(first, last);
    plotArea.dataset.drawnEvents = String(events);
    plotArea.dataset.drawnEdges = String(edges);
    if (!document.body.dataset.ready) {
      document.body.dataset.ready = "1";
      performance.mark("ctxplane-drawn");
      window.ctxplaneReadyMs = performance.now();
    }
  }

  function drawAxis() {
    const ctx = sizeCanvas(axis);
    const w = axis.clientWidth, h = axis.clientHeight;
    ctx.clearRect(0, 0, w, h);
    // a 1-2-5 step giving about one tick per 110 px
    const raw = (view.t1 - view.t0) / Math.max(1, w / 110);
    const pow = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw);
    ctx.fillStyle = "#3a4150";
    ctx.strokeStyle = "#b8bdc9";
    ctx.font = "11px system-ui, sans-serif";
    ctx.beginPath();
    for (let t = Math.ceil(view.t0 / step) * step; t <= view.t1; t += step) {
      const x = Math.round(xOf(t)) + 0.5;
      ctx.moveTo(x, h - 8); ctx.lineTo(x, h);
      ctx.fillText(Math.abs(t) < step / 1e6 ? "0" : fmtDuration(t), x + 3, h - 12);
    }
    ctx.stroke();
  }

  function drawLanes(ctx, first, last) {
    const w = plotWidth();
    T.groups.forEach((g, gi) => {
      const y = groupY[gi] - view.scrollY;
      if (y > plotHeight() || y + GROUP_H < 0) return;
      ctx.fillStyle = "#e6e9f0";
      ctx.fillRect(0, y, w, GROUP_H);
    });
    for (let l = first; l < last; l++) {
      const y = laneY[l] - view.scrollY;
      ctx.fillStyle = l % 2 ? "#f6f7fa" : "#ffffff";
      ctx.fillRect(0, y, w, laneH[l]);
      ctx.fillStyle = "#d5d8e0";  // the EU's thread of execution: a thin line
      ctx.fillRect(0, y + EVENT_H / 2, w, 1);
    }
  }

  function drawSpans(ctx, first, last) {
    const sp = T.spans, w = plotWidth();
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    for (let l = first; l < last; l++) {
      const hue = serviceHue(T.lanes[l].service);
      for (const s of laneSpans[l]) {
        if (sp.t0[s] > view.t1) break;
        if (sp.t1[s] < view.t0) continue;
        const x0 = Math.max(-2, xOf(sp.t0[s])), x1 = Math.min(w + 2, xOf(sp.t1[s]));
        const y = spanY(s), width = Math.max(1, x1 - x0);
        const status = STATUS[sp.status[s]];
        ctx.fillStyle = `hsl(${hue}, 55%, ${status === "open" ? 90 : 80}%)`;
        ctx.fillRect(x0, y + 1, width, SPAN_H - 2);
        ctx.strokeStyle = status === "error" ? "#c62828" : `hsl(${hue}, 45%, 55%)`;
        ctx.lineWidth = status === "error" ? 2 : 1;
        ctx.setLineDash(status === "open" ? [3, 2] : []);
        ctx.strokeRect(x0 + 0.5, y + 1.5, width - 1, SPAN_H - 3);
        ctx.setLineDash([]);
        if (width > 40) {
          const text = `${T.strings[sp.name[s]]} ${status === "open" ? "(open)" :
            fmtDuration(sp.t1[s] - sp.t0[s])}`;
          ctx.fillStyle = "#1d2330";
          ctx.save();
          ctx.beginPath(); ctx.rect(x0, y, width - 2, SPAN_H); ctx.clip();
          ctx.fillText(text, Math.max(x0, 0) + 3, y + SPAN_H / 2);
          ctx.restore();
        }
      }
    }
  }

  function drawEvents(ctx, first, last) {
    const ev = T.events, w = plotWidth();
    let drawn = 0;
    for (let l = first; l < last; l++) {
      const lo = lowerBound(ev.t, laneFirst[l], laneLast[l], tOf(-EVENT_R));
      let lastX = -1e9;
      for (let k = lo; k < laneLast[l]; k++) {
        const x = xOf(ev.t[k]);
        if (x > w + EVENT_R) break;
        // more than one event per pixel: draw one (but never skip one on the critical path)
        if (x - lastX < 1 && !ev.critical[k] && k !== view.selected) continue;
        lastX = x;
        const y = eventY(k);
        ctx.beginPath();
        ctx.arc(x, y, EVENT_R, 0, 2 * Math.PI);
        ctx.fillStyle = TYPE_COLOUR[EVENT_TYPES[ev.type[k]]] || "#1d2330";
        ctx.fill();
        if (ev.critical[k]) {
          ctx.lineWidth = 2; ctx.strokeStyle = CRITICAL; ctx.stroke();
        }
        if (k === view.selected) {
          ctx.beginPath(); ctx.arc(x, y, EVENT_R + 3, 0, 2 * Math.PI);
          ctx.lineWidth = 2; ctx.strokeStyle = "#1d2330"; ctx.stroke();
        }
        drawn++;
      }
    }
    return drawn;
  }

  // edges touching the visible lanes and time window: SVG paths (canvas beyond EDGE_CAP)
  function drawEdges(ctx, first, last) {
    const ed = T.edges, ev = T.events, w = plotWidth();
    const parts = [];
    let drawn = 0, onCanvas = 0;
    for (let i = 0; i < ed.src.length; i++) {
      const a = ed.src[i], b = ed.dst[i];
      const la = ev.lane[a], lb = ev.lane[b];
      if (Math.max(la, lb) < first || Math.min(la, lb) >= last) continue;
      const xa = xOf(ev.t[a]), xb = xOf(ev.t[b]);
      if (Math.max(xa, xb) < 0 || Math.min(xa, xb) > w) continue;
      const ya = eventY(a), yb = eventY(b);
      const kind = EDGE_KINDS[ed.kind[i]], critical = ed.critical[i] === 1;
      let d;
      if (la === lb) {
        d = `M${xa.toFixed(1)},${ya.toFixed(1)}H${xb.toFixed(1)}`;
      } else {
        // a gentle S-curve from parent to child, ending at the child's side
        const mid = ((ya + yb) / 2).toFixed(1);
        d = `M${xa.toFixed(1)},${ya.toFixed(1)}C${xa.toFixed(1)},${mid} ${xb.toFixed(1)},${mid} ` +
            `${xb.toFixed(1)},${(yb + (yb > ya ? -EVENT_R : EVENT_R)).toFixed(1)}`;
      }
      if (!critical && drawn >= EDGE_CAP) {
        ctx.strokeStyle = kind === "fork" ? "#2e9d5b" : kind === "join" ? "#3b6fd8" : "#e08a1e";
        ctx.lineWidth = 1;
        ctx.stroke(new Path2D(d));
        onCanvas++;
        continue;
      }
      parts.push(`<path class="edge ${kind}${critical ? " critical" : ""}" ` +
                 `data-src="${ev.id[a]}" data-dst="${ev.id[b]}" d="${d}"></path>`);
      drawn++;
    }
    // critical steps last, so that they are drawn above the other edges
    parts.sort((p, q) => (p.includes(" critical") ? 1 : 0) - (q.includes(" critical") ? 1 : 0));
    edgeLayer.innerHTML = parts.join("");  // numbers, hex ids and fixed class names only
    return drawn + onCanvas;
  }

  function drawLabels(first, last) {
    const frag = document.createDocumentFragment();
    T.groups.forEach((g, gi) => {
      const y = groupY[gi] - view.scrollY;
      if (y > plotHeight() || y + GROUP_H < 0) return;
      const div = document.createElement("div");
      div.className = "group-label";
      div.style.top = `${y}px`;
      div.dataset.service = g.service;
      div.textContent = `${g.service} \u00b7 pid ${g.pid} \u00b7 ${g.count} EU${g.count > 1 ? "s" : ""}`;
      frag.append(div);
    });
    const onPath = new Set(T.critical.events.map((k) => T.events.lane[k]));
    for (let l = first; l < last; l++) {
      const lane = T.lanes[l];
      const div = document.createElement("div");
      div.className = "lane-label" + (onPath.has(l) ? " on-path" : "");
      div.style.top = `${laneY[l] - view.scrollY}px`;
      div.dataset.eu = lane.eu;
      div.dataset.lane = String(l);
      div.title = `EU ${lane.eu} \u00b7 ${lane.kind || "eu"} \u00b7 thread ${lane.thread}`;
      const kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = ` ${lane.kind || ""} \u00b7 ${lane.thread}`;
      div.append(lane.name, kind);
      frag.append(div);
    }
    labels.replaceChildren(frag);
  }

  // ---- details on click -------------------------------------------------------------------

  // the default details: where the critical path's time went, by execution unit
  function showHint() {
    const p = document.createElement("p");
    p.className = "hint";
    p.textContent = "Click an event or a span to see its details.";
    const h = document.createElement("h2");
    h.textContent = `critical path: ${fmtDuration(T.critical.duration)} ` +
      `(${T.critical.events.length} events); time inside each execution unit on it:`;
    const dl = document.createElement("dl");
    dl.id = "critical-breakdown";
    for (const [l, us] of T.critical.by_lane.slice(0, 12)) {
      const lane = T.lanes[l];
      const dt = document.createElement("dt");
      dt.textContent = `${lane.name} (${lane.service}, pid ${lane.pid})`;
      const dd = document.createElement("dd");
      dd.textContent = `${fmtDuration(us)} (${(100 * us / (T.critical.duration || 1)).toFixed(0)}%)`;
      dl.append(dt, dd);
    }
    details.replaceChildren(p, h, dl);
    delete details.dataset.event;
    delete details.dataset.span;
  }

  function showDetails(title, rows) {
    const h = document.createElement("h2");
    h.textContent = title;
    const dl = document.createElement("dl");
    for (const [key, value] of rows) {
      if (value === undefined || value === null || value === "") continue;
      const dt = document.createElement("dt"); dt.textContent = key;
      const dd = document.createElement("dd"); dd.textContent = String(value);
      dl.append(dt, dd);
    }
    details.replaceChildren(h, dl);
    details.dataset.showing = title;
  }

  function showEvent(k) {
    const ev = T.events, lane = T.lanes[ev.lane[k]];
    const attrs = ev.attrs[String(k)];
    showDetails(`event: ${T.strings[ev.label[k]]}`, [
      ["type", EVENT_TYPES[ev.type[k]]], ["id", ev.id[k]], ["time", fmtDuration(ev.t[k])],
      ["ts (ns, own clock)", ev.ts[k]], ["seq", ev.seq[k]],
      ["parents", ev.parents[k].join(", ") || "(none: first event)"],
      ["EU", `${lane.name} (${lane.eu})`], ["service", `${lane.service} (pid ${lane.pid})`],
      ["thread", lane.thread], ["in span", ev.span[k]],
      ["critical path", ev.critical[k] ? "yes" : "no"],
      ["attributes", attrs ? JSON.stringify(attrs) : ""],
    ]);
    details.dataset.event = ev.id[k];
  }

  function showSpan(s) {
    const sp = T.spans, lane = T.lanes[sp.lane[s]];
    const status = STATUS[sp.status[s]];
    const start = sp.start[s], end = sp.end[s];
    const attrs = {};
    for (const k of [start, end]) if (k >= 0) Object.assign(attrs, T.events.attrs[String(k)] || {});
    showDetails(`span: ${T.strings[sp.name[s]]}`, [
      ["span id", sp.id[s]], ["duration", status === "open" ? "open (no end)" :
        fmtDuration(sp.t1[s] - sp.t0[s])], ["status", status],
      ["start", fmtDuration(sp.t0[s])], ["EU", `${lane.name} (${lane.eu})`],
      ["service", `${lane.service} (pid ${lane.pid})`],
      ["attributes", Object.keys(attrs).length ? JSON.stringify(attrs) : ""],
    ]);
    details.dataset.span = sp.id[s];
  }

  // the event within 6 px of (x, y), else the span under it
  function hit(x, y) {
    const cy = y + view.scrollY;
    const l = Math.max(0, lowerBound(laneY, 0, laneY.length, cy + 1e-6) - 1);
    if (l >= laneY.length || cy < laneY[l] || cy > laneY[l] + laneH[l]) return null;
    const ev = T.events;
    if (cy < laneY[l] + EVENT_H) {
      const lo = lowerBound(ev.t, laneFirst[l], laneLast[l], tOf(x - 6));
      let best = -1, bestD = 7;
      for (let k = lo; k < laneLast[l]; k++) {
        const d = Math.abs(xOf(ev.t[k]) - x);
        if (xOf(ev.t[k]) > x + 6) break;
        if (d < bestD) { best = k; bestD = d; }
      }
      return best >= 0 ? { event: best } : null;
    }
    const row = Math.floor((cy - laneY[l] - EVENT_H) / SPAN_H), t = tOf(x);
    for (const s of laneSpans[l]) {
      if (T.spans.depth[s] === row && T.spans.t0[s] <= t && t <= T.spans.t1[s]) return { span: s };
    }
    return null;
  }

  // ---- interaction ------------------------------------------------------------------------

  let drag = null;
  plotArea.addEventListener("mousedown", (e) => {
    drag = { x: e.clientX, y: e.clientY, t0: view.t0, t1: view.t1, s: view.scrollY, moved: false };
    plotArea.classList.add("dragging");
  });
  window.addEventListener("mousemove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    const dt = dx / plotWidth() * (drag.t1 - drag.t0);
    view.t0 = drag.t0 - dt; view.t1 = drag.t1 - dt; view.scrollY = drag.s - dy;
    redraw();
  });
  window.addEventListener("mouseup", (e) => {
    if (!drag) return;
    const moved = drag.moved;
    drag = null;
    plotArea.classList.remove("dragging");
    if (moved) return;
    const rect = plotArea.getBoundingClientRect();
    const found = hit(e.clientX - rect.left, e.clientY - rect.top);
    if (found && found.event !== undefined) {
      view.selected = found.event; showEvent(found.event);
    } else if (found && found.span !== undefined) {
      view.selected = null; showSpan(found.span);
    }
    redraw();
  });
  plotArea.addEventListener("wheel", (e) => {
    e.preventDefault();
    if (e.ctrlKey || e.metaKey) {
      zoom(Math.exp(e.deltaY * 0.002), e.clientX - plotArea.getBoundingClientRect().left);
    } else if (e.shiftKey) {
      const dt = e.deltaY / plotWidth() * (view.t1 - view.t0);
      view.t0 += dt; view.t1 += dt;
    } else {
      view.scrollY += e.deltaY;
      if (e.deltaX) {  // a touchpad's sideways swipe pans in time
        const dt = e.deltaX / plotWidth() * (view.t1 - view.t0);
        view.t0 += dt; view.t1 += dt;
      }
    }
    redraw();
  }, { passive: false });
  labels.addEventListener("wheel", (e) => {
    e.preventDefault(); view.scrollY += e.deltaY; redraw();
  }, { passive: false });
  plotArea.addEventListener("dblclick", () => fit());
  window.addEventListener("keydown", (e) => {
    if (e.key === "+" || e.key === "=") zoom(0.7, plotWidth() / 2);
    else if (e.key === "-") zoom(1 / 0.7, plotWidth() / 2);
    else return;
    redraw();
  });
  window.addEventListener("resize", redraw);

  function zoom(factor, x) {
    const t = tOf(x);
    const width = Math.max(1e-3, (view.t1 - view.t0) * factor);
    view.t0 = t - (x / plotWidth()) * width;
    view.t1 = view.t0 + width;
  }

  // ---- for tests and scripts: where an event is drawn, and what is drawn -------------

  window.ctxplaneViewer = {
    select,
    traces: () => DATA.traces.map((t) => t.id),
    // position of an event relative to the plot area (CSS pixels), scrolling it into view
    eventPosition(id) {
      const k = T.events.id.indexOf(id);
      if (k < 0) return null;
      const y = laneY[T.events.lane[k]];
      if (y < view.scrollY || y > view.scrollY + plotHeight() - EVENT_H) {
        view.scrollY = y - 40; draw();
      }
      return { x: xOf(T.events.t[k]), y: eventY(k) };
    },
    criticalEventIds: () => T.critical.events.map((k) => T.events.id[k]),
    window: () => [view.t0, view.t1],  // the visible time window, microseconds
  };

  buildTraceList();
  if (DATA.traces.length) select(0);
  else $("summary").textContent = "no trace in the file(s)";
})();
