// rtpose view: the page. Plain JavaScript, no libraries, nothing fetched from elsewhere.
// The server pushes a JSON state about 15 times a second on /ws, each followed by the
// preview JPEG as a binary message when there is a new one (see rtpose/view/server.py).
"use strict";

const COLOURS = ["#ff5ca8", "#3cc8ff", "#ffd23c", "#7cff6b", "#c58bff", "#ff8a3c", "#5cffd9", "#ffffff"];
const TIMELINE_S = 30;
const $ = (id) => document.getElementById(id);

let state = null;          // the last JSON state
let run = undefined;       // the run the timeline belongs to
let samples = [];          // [seq, t_output, frame, rules, volts]
let pendingPreview = null; // the meta of the JPEG that comes next
let lastPreviewAt = 0;     // performance.now() of the last preview drawn
let drawnNodes = [];       // [x, y (canvas px), text] for the hover tooltip
let drawnCount = 0;
let socket = null;

function colourOf(identity) {
  const classes = (state && state.status && state.status.skeleton.classes) || [];
  const i = classes.indexOf(identity);
  return i < 0 ? "#aaaaaa" : COLOURS[i % COLOURS.length];
}

function fmt(value, digits = 1) {
  return value === null || value === undefined || Number.isNaN(value) ? "–" : Number(value).toFixed(digits);
}

function setText(id, text) {
  const el = $(id);
  if (el.textContent !== text) el.textContent = text;
}

// ---- the WebSocket ------------------------------------------------------------------

function connect() {
  socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  socket.binaryType = "blob";
  socket.onmessage = (event) => {
    if (typeof event.data === "string") {
      onState(JSON.parse(event.data));
    } else if (pendingPreview !== null) {
      const meta = pendingPreview;
      pendingPreview = null;
      createImageBitmap(event.data).then((bitmap) => {
        lastPreviewAt = performance.now();
        drawFrame(bitmap, meta.frame_size, meta.poses, meta.frame);
        bitmap.close();
      }).catch(() => {});
    }
  };
  socket.onclose = () => {
    banner("noserver", "the view server is not answering (was `rtpose view` stopped?); reconnecting…");
    setTimeout(connect, 1000);
  };
}

function banner(kind, text) {
  const el = $("banner");
  el.className = `state-${kind}`;
  el.dataset.state = kind;
  setText("banner", text);
}

// ---- one state ----------------------------------------------------------------------

function onState(data) {
  state = data;
  banner(data.state, data.headline);
  if (data.run !== run) {  // a new run (or the first): the timeline starts over
    run = data.run;
    samples = [];
  }
  for (const sample of data.samples) samples.push(sample);
  if (samples.length) {
    const newest = samples[samples.length - 1][1];
    while (samples.length && samples[0][1] !== null && newest - samples[0][1] > TIMELINE_S + 2) samples.shift();
  }
  if (data.preview) pendingPreview = data.preview;
  else if (performance.now() - lastPreviewAt > 2000 && data.latest) drawPosesOnly(data);
  showRun(data.status);
  showRules(data);
  showOutputs(data);
  showFrames(data);
  showEvents(data.events);
  drawTimeline();
  drawHistogram("inference", data.histograms, "inference-figures");
  drawHistogram("exposure_to_output", data.histograms, "e2o-figures");
}

function showRun(status) {
  if (!status) { setText("run-info", "waiting for the daemon's status"); return; }
  const cam = status.camera || {};
  const model = status.model || {};
  setText("run-info", `${status.protocol.name} · model ${model.export_dir} · ${model.engine}` +
    `${model.device ? ` (${model.device})` : ""} · ${cam.name || "camera"} at ${fmt(cam.fps, 0)} FPS`);
  const legend = $("legend");
  const classes = status.skeleton.classes;
  const key = classes.join(",");
  if (legend.dataset.key !== key) {
    legend.dataset.key = key;
    legend.innerHTML = "";
    classes.forEach((name, i) => {
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = COLOURS[i % COLOURS.length];
      legend.append(swatch, document.createTextNode(name));
    });
  }
  const lat = status.latency_ms || {};
  const o = lat.overhead || {};
  setText("loop-figures", `daemon's own figures over the run: loop overhead p50 ${fmt(o.p50, 3)} ms, ` +
    `p99 ${fmt(o.p99, 3)} ms; inference p99 ${fmt((lat.inference || {}).p99, 2)} ms; ` +
    `exposure → output p99 ${fmt((lat.exposure_to_output || {}).p99, 2)} ms`);
}

function showRules(data) {
  const box = $("rules");
  const texts = (data.status && data.status.rules) || {};
  const names = Object.keys(data.rule_states).length ? Object.keys(data.rule_states) : Object.keys(texts);
  if (!names.length) return;
  if (box.dataset.key !== names.join(",")) {
    box.dataset.key = names.join(",");
    box.innerHTML = "";
    for (const name of names) {
      const row = document.createElement("div");
      row.className = "rule";
      row.id = `rule-${name}`;
      row.innerHTML = '<span class="pill false">–</span><span class="name"></span><span class="changes"></span>';
      row.querySelector(".name").textContent = name;
      const text = document.createElement("div");
      text.className = "text";
      text.textContent = texts[name] || "";
      box.append(row, text);
    }
  }
  for (const name of names) {
    const row = $(`rule-${name}`);
    const holds = data.rule_states[name];
    const pill = row.querySelector(".pill");
    pill.className = `pill ${holds ? "true" : "false"}`;
    pill.textContent = holds === undefined ? "–" : holds ? "TRUE" : "false";
    const changes = data.rule_changes[name] || 0;
    row.dataset.state = String(holds);
    row.dataset.changes = String(changes);
    row.querySelector(".changes").textContent = `${changes} change${changes === 1 ? "" : "s"}`;
  }
}

function showOutputs(data) {
  const outputs = (data.status && data.status.outputs) || {};
  const names = Object.keys(outputs).length ? Object.keys(outputs) : Object.keys(data.volts);
  const triggers = (data.status && data.status.triggers) || {};
  const box = $("outputs");
  if (!names.length) return;
  box.innerHTML = "";
  for (const name of names) {
    const volts = data.volts[name];
    const row = document.createElement("div");
    row.className = "output";
    row.id = `output-${name}`;
    row.dataset.triggers = String(triggers[name] || 0);
    const v = document.createElement("span");
    v.className = `volts ${volts ? "on" : ""}`;
    v.textContent = `${fmt(volts, 2)} V`;
    row.append(document.createTextNode(`${name} → ${outputs[name] || "?"}: `), v,
      document.createTextNode(name in triggers ? ` · ${triggers[name]} pulses` : ""));
    box.append(row);
  }
}

function showFrames(data) {
  const frames = (data.status && data.status.frames) || {};
  setText("n-acquired", fmt(frames.acquired, 0));
  setText("n-processed", fmt(frames.processed, 0));
  setText("n-dropped", fmt(frames.dropped, 0));
  setText("r-acquired", fmt(data.rates.acquired));
  setText("r-processed", fmt(data.rates.processed));
  setText("r-dropped", fmt(data.rates.dropped));
  setText("n-received", fmt(data.received, 0));
  setText("r-received", fmt(data.rates.received));
  const reasons = Object.entries(frames.dropped_by_reason || {}).filter(([, n]) => n > 0);
  setText("drop-reasons", reasons.length ? "dropped: " + reasons.map(([k, n]) => `${k} ${n}`).join(", ") : "");
}

function showEvents(events) {
  const list = $("events");
  const key = events.map((e) => `${e.frame}${e.output}${e.kind}`).join("|");
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  list.innerHTML = "";
  if (!events.length) { list.innerHTML = '<li class="muted">none yet</li>'; return; }
  const newest = state && state.latest ? state.latest.output : null;
  for (const e of events.slice().reverse()) {
    const li = document.createElement("li");
    const ago = newest !== null && e.t !== null ? ` (${fmt(newest - e.t)} s ago)` : "";
    li.textContent = `frame ${e.frame}: ${e.output} ${e.kind === "on" ? `on, ${fmt(e.volts, 2)} V` : "off"}${ago}`;
    list.append(li);
  }
}

// ---- the picture --------------------------------------------------------------------

function drawFrame(image, frameSize, poses, frame) {
  const canvas = $("frame");
  const [h, w] = frameSize;
  if (canvas.width !== image.width || canvas.height !== image.height) {
    canvas.width = image.width;
    canvas.height = image.height;
  }
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0);
  drawSkeletons(ctx, poses, canvas.width / w, canvas.height / h);
  frameDrawn(frame, poses);
}

function drawPosesOnly(data) {
  const canvas = $("frame");
  const size = (data.status && data.status.camera && data.status.camera.frame_size) || [1024, 1024];
  const scale = 512 / Math.max(size[0], size[1]);
  const width = Math.round(size[1] * scale), height = Math.round(size[0] * scale);
  if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, width, height);
  ctx.fillStyle = "#8a939e";
  ctx.font = "12px system-ui";
  ctx.fillText("no preview frames (publisher.preview is off): poses only", 8, 18);
  drawSkeletons(ctx, data.latest, scale, scale);
  frameDrawn(data.latest.frame, data.latest);
}

function frameDrawn(frame, poses) {
  drawnCount += 1;
  const el = $("frame-number");
  el.textContent = String(frame);
  el.dataset.drawn = String(drawnCount);
  el.dataset.frame = String(frame);
  const lat = poses && poses.output !== null && poses.exposure !== null
    ? ` · exposure → output ${fmt(1000 * (poses.output - poses.exposure))} ms` : "";
  setText("frame-latency", lat);
}

function drawSkeletons(ctx, poses, sx, sy) {
  drawnNodes = [];
  if (!poses || !state || !state.status) return;
  const skeleton = state.status.skeleton;
  poses.points.forEach((instance, i) => {
    const identity = poses.identity[i];
    const colour = colourOf(identity);
    const scores = poses.point_scores[i] || [];
    ctx.lineWidth = 2;
    ctx.strokeStyle = colour;
    for (const [a, b] of skeleton.edges) {
      const p = instance[a], q = instance[b];
      if (!p || !q) continue;
      ctx.globalAlpha = Math.max(0.25, Math.min(scores[a] || 0, scores[b] || 0));
      ctx.beginPath();
      ctx.moveTo(p[0] * sx, p[1] * sy);
      ctx.lineTo(q[0] * sx, q[1] * sy);
      ctx.stroke();
    }
    instance.forEach((p, n) => {
      if (!p) return;
      const score = scores[n];
      ctx.globalAlpha = Math.max(0.25, score || 0);
      ctx.fillStyle = colour;
      ctx.beginPath();
      ctx.arc(p[0] * sx, p[1] * sy, 3, 0, 2 * Math.PI);
      ctx.fill();
      drawnNodes.push([p[0] * sx, p[1] * sy,
        `${identity || "unassigned"} · ${skeleton.nodes[n]} · score ${fmt(score, 2)}`]);
    });
  });
  ctx.globalAlpha = 1;
}

$("frame").addEventListener("mousemove", (event) => {
  const canvas = $("frame");
  const rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) * canvas.width / rect.width;
  const y = (event.clientY - rect.top) * canvas.height / rect.height;
  let best = null, bestD = 64;
  for (const node of drawnNodes) {
    const d = (node[0] - x) ** 2 + (node[1] - y) ** 2;
    if (d < bestD) { best = node; bestD = d; }
  }
  const tip = $("tooltip");
  if (!best) { tip.hidden = true; return; }
  tip.hidden = false;
  tip.textContent = best[2];
  tip.style.left = `${event.clientX - rect.left + 12}px`;
  tip.style.top = `${event.clientY - rect.top + 12}px`;
});
$("frame").addEventListener("mouseleave", () => { $("tooltip").hidden = true; });

// ---- the timeline -------------------------------------------------------------------

function drawTimeline() {
  const canvas = $("timeline");
  const cssWidth = Math.max(300, Math.round(canvas.getBoundingClientRect().width));
  const rules = state.status ? Object.keys(state.status.rules) : Object.keys(state.rule_states);
  const outputs = state.status ? Object.keys(state.status.outputs) : Object.keys(state.volts);
  const rowH = 18, plotH = 46, left = 130;
  const height = Math.max(60, rules.length * rowH + outputs.length * (plotH + 6) + 22);
  if (canvas.width !== cssWidth || canvas.height !== height) { canvas.width = cssWidth; canvas.height = height; }
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#0b0d10";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (!samples.length) return;
  const newest = samples[samples.length - 1][1];
  const width = canvas.width - left - 8;
  const xOf = (t) => left + width * (1 - (newest - t) / TIMELINE_S);
  ctx.font = "11px system-ui";
  let y = 4;
  for (const name of rules) {
    ctx.fillStyle = "#c6ccd3";
    ctx.fillText(name, 4, y + 12);
    ctx.fillStyle = "#1f9d55";
    for (let i = 0; i < samples.length; i++) {
      const [, t, , states] = samples[i];
      if (!states[name] || t === null || newest - t > TIMELINE_S) continue;
      const next = i + 1 < samples.length ? samples[i + 1][1] : t;
      const x0 = xOf(t), x1 = Math.max(x0 + 1, xOf(next));
      ctx.fillRect(x0, y + 2, x1 - x0, rowH - 4);
    }
    y += rowH;
  }
  for (const name of outputs) {
    let top = 5;
    for (const s of samples) top = Math.max(top, s[4][name] || 0);
    ctx.fillStyle = "#c6ccd3";
    ctx.fillText(`${name} (0-${fmt(top, 0)} V)`, 4, y + 14);
    ctx.strokeStyle = "#2c333d";
    ctx.strokeRect(left, y + 2, width, plotH);
    ctx.strokeStyle = "#ffb347";
    ctx.beginPath();
    let started = false;
    for (const [, t, , , volts] of samples) {
      if (t === null || newest - t > TIMELINE_S || !(name in volts)) continue;
      const px = xOf(t), py = y + 2 + plotH - plotH * volts[name] / top;
      if (started) ctx.lineTo(px, py); else { ctx.moveTo(px, py); started = true; }
    }
    ctx.stroke();
    y += plotH + 6;
  }
  ctx.fillStyle = "#8a939e";
  for (let s = 0; s <= TIMELINE_S; s += 5) ctx.fillText(`-${s} s`, xOf(newest - s) - 12, canvas.height - 4);
}

// ---- latency histograms -------------------------------------------------------------

function percentileOf(counts, edge, q) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (!total) return null;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i];
    if (seen >= q * total) return edge(i + 1);  // the bin's upper edge
  }
  return edge(counts.length);
}

function drawHistogram(name, histograms, figuresId) {
  // Log-spaced bins: bin k holds [low * ratio^k, low * ratio^(k+1)) ms; drawn on a log axis.
  const counts = histograms[name];
  const edge = (k) => histograms.low_ms * histograms.ratio ** k;
  const canvas = $(`hist-${name}`);
  const cssWidth = Math.max(200, Math.round(canvas.getBoundingClientRect().width));
  if (canvas.width !== cssWidth) canvas.width = cssWidth;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#0b0d10";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const total = counts.reduce((a, b) => a + b, 0);
  if (!total) { setText(figuresId, ""); return; }
  const p50 = percentileOf(counts, edge, 0.5), p99 = percentileOf(counts, edge, 0.99);
  setText(figuresId, `p50 ${fmt(p50, 2)} ms · p99 ${fmt(p99, 2)} ms · ${total} frames seen here`);
  let first = counts.findIndex((n) => n > 0), last = counts.length - 1;
  while (counts[last] === 0) last--;
  first = Math.max(0, first - 4);
  last = Math.min(counts.length - 1, Math.max(last + 4, first + 30));
  const bars = counts.slice(first, last + 1);
  const most = Math.max(...bars);
  const left = 5, w = (canvas.width - 10) / bars.length, base = canvas.height - 16;
  ctx.fillStyle = "#3cc8ff";
  bars.forEach((n, i) => {
    const h = (base - 4) * n / most;
    ctx.fillRect(left + i * w, base - h, Math.max(1, w - 1), h);
  });
  ctx.fillStyle = "#8a939e";
  ctx.font = "11px system-ui";
  const xOf = (ms) => left + w * (Math.log(ms / histograms.low_ms) / Math.log(histograms.ratio) - first);
  for (const tick of [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]) {
    const x = xOf(tick);
    if (x < left || x > canvas.width - 34) continue;
    ctx.fillRect(x, base, 1, 4);
    ctx.fillText(`${tick}`, x - 6, canvas.height - 3);
  }
  ctx.fillText("ms", canvas.width - 18, canvas.height - 3);
}

connect();
