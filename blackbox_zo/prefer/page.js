// The annotator page: fetch a pair, show it as plain text, send one vote per click or key.
// Model text is only ever set with textContent (never innerHTML), so "<script>" in a completion shows as text.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const KEYS = { "1": "left", "ArrowLeft": "left", "2": "right", "ArrowRight": "right",
               "3": "tie", "t": "tie", "T": "tie", "4": "both_bad", "b": "both_bad", "B": "both_bad" };
const SVG = "http://www.w3.org/2000/svg";
let current = null;   // the pair on screen
let busy = false;     // a vote is in flight
let poll = null;

function $(id) { return document.getElementById(id); }

function annotator() {
  const input = $("annotator");
  let name = input.value.trim();
  if (!name) {
    name = localStorage.getItem("bzp-annotator");
    if (!name) {
      const bytes = crypto.getRandomValues(new Uint8Array(3));
      name = "annotator-" + Array.from(bytes, b => b.toString(16).padStart(2, "0")).join("");
    }
    input.value = name;
  }
  localStorage.setItem("bzp-annotator", name);
  return name;
}

function setStatus(text) { $("status").textContent = text; }

function showProgress(p) {
  const limit = p.steps ? ` of ${p.steps}` : "";
  let line = `step ${p.step + 1}${limit} · ${p.votes_left} of ${p.pairs} votes left in this step · ${p.step} steps taken`;
  if (p.done) line = `finished: ${p.step} steps taken`;
  const wr = p.winrate;
  if (wr.length) line += ` · win-rate of tuned vs base on held-back prompts: ${wr[wr.length - 1][1].toFixed(2)}`;
  else if (!p.winrate_configured) line += " · (no held-back win-rate: the config names no judge)";
  $("progress").textContent = line;
  $("instructions").textContent = p.instructions;
  drawTrend(p);
}

function drawTrend(p) {
  // win-rate per step when configured, otherwise how decisive each step's votes were (mean |preference|)
  const points = p.winrate_configured ? p.winrate : p.strength.map((v, i) => [i + 1, v]);
  $("trend-caption").textContent = p.winrate_configured
    ? "win-rate of the tuned model against the base model on held-back prompts, after each step (dashed: 0.5)"
    : "mean |preference| per step: 1 = every pair decided one way, 0 = ties or split votes";
  const svg = $("trend");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = 480, H = 140, pad = 24;
  const maxStep = Math.max(1, ...points.map(q => q[0]));
  const x = s => pad + (W - 2 * pad) * s / maxStep;
  const y = v => H - pad - (H - 2 * pad) * v;
  const mid = document.createElementNS(SVG, "line");
  for (const [k, v] of [["x1", pad], ["x2", W - pad], ["y1", y(0.5)], ["y2", y(0.5)]]) mid.setAttribute(k, v);
  svg.appendChild(mid);
  for (const [label, v] of [["1", 1], ["0", 0]]) {
    const t = document.createElementNS(SVG, "text");
    t.setAttribute("x", 4); t.setAttribute("y", y(v) + 4); t.textContent = label;
    svg.appendChild(t);
  }
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.map(q => `${x(q[0]).toFixed(1)},${y(q[1]).toFixed(1)}`).join(" "));
  svg.appendChild(line);
  for (const q of points) {
    const c = document.createElementNS(SVG, "circle");
    c.setAttribute("cx", x(q[0]).toFixed(1)); c.setAttribute("cy", y(q[1]).toFixed(1)); c.setAttribute("r", 3);
    svg.appendChild(c);
    const t = document.createElementNS(SVG, "text");  // the step number under each point
    t.setAttribute("x", x(q[0]) - 3); t.setAttribute("y", H - 6); t.textContent = String(q[0]);
    svg.appendChild(t);
  }
}

function showPair(next) {
  current = next;
  $("prompt").textContent = next.prompt;
  $("left").textContent = next.left;
  $("right").textContent = next.right;
  $("pair").hidden = false;
  $("pair").dataset.pairId = next.pair_id;
  setStatus("");
}

async function loadNext() {
  clearTimeout(poll);
  const r = await fetch("/api/next", {  // a POST with the token: handing out a pair leases it
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify({ annotator: annotator() }),
  });
  if (!r.ok) { setStatus(`error ${r.status}: ${await r.text()}`); return; }
  const body = await r.json();
  showProgress(body.progress);
  const next = body.next;
  if (next.status === "pair") { showPair(next); return; }
  current = null;
  $("pair").hidden = true;
  const why = { generating: "generating the next step's answers…", waiting: "every open pair is with another annotator; waiting…",
                done: "all steps are done: thank you!", error: "the server hit an error: " + next.message };
  setStatus(why[next.status] || next.status);
  if (next.status === "generating" || next.status === "waiting") poll = setTimeout(loadNext, 1000);
}

async function vote(choice) {
  if (!current || busy) return;
  busy = true;
  for (const b of document.querySelectorAll("button")) b.disabled = true;
  try {
    const r = await fetch("/api/vote", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ pair_id: current.pair_id, choice: choice, annotator: annotator() }),
    });
    if (!r.ok) {
      const body = await r.json().catch(() => ({ error: r.statusText }));
      setStatus(`vote not counted (${r.status}): ${body.error}`);
    }
  } finally {
    busy = false;
    for (const b of document.querySelectorAll("button")) b.disabled = false;
  }
  await loadNext();
}

document.addEventListener("keydown", e => {
  if (e.target instanceof HTMLInputElement || e.ctrlKey || e.metaKey || e.altKey) return;
  const choice = KEYS[e.key];
  if (choice) { e.preventDefault(); vote(choice); }
});
for (const b of document.querySelectorAll("button[data-choice]")) b.addEventListener("click", () => vote(b.dataset.choice));
$("annotator").addEventListener("change", () => { annotator(); loadNext(); });
$("annotator").value = localStorage.getItem("bzp-annotator") || "";
loadNext();
