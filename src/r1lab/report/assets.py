"""The page's stylesheet and script, inlined into every report (system fonts only, no libraries)."""

CSS = """
:root { --fg: #1d232b; --muted: #68717d; --line: #dde2e8; --bg: #fff; --panel: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
  background: var(--bg); }
header { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid var(--line);
  padding: 8px 20px; }
h1 { font-size: 18px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 10px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 14px; margin: 18px 0 8px; }
nav { display: flex; flex-wrap: wrap; gap: 2px 12px; }
nav a { color: #0b5cad; text-decoration: none; font-size: 13px; white-space: nowrap; }
main { padding: 0 20px 40px; max-width: 1500px; }
section { scroll-margin-top: 70px; }
table { border-collapse: collapse; margin: 6px 0; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
table.num td:nth-child(n+3) { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.muted { color: var(--muted); }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 10px; }
figure.plot { margin: 0; border: 1px solid var(--line); border-radius: 4px; padding: 4px; background: #fff; }
figure.plot.wide { grid-column: 1 / -1; }
figure.plot svg { display: block; width: 100%; height: auto; }
.controls { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; margin-bottom: 6px; }
.controls input[type=range] { flex: 1; min-width: 160px; }
button { font-size: 13px; padding: 2px 10px; }
.legend span { margin-right: 8px; padding: 1px 4px; }
article.sample { border: 1px solid var(--line); border-radius: 4px; margin: 8px 0; padding: 8px 10px; }
article.sample.aha { border-color: #d9a400; box-shadow: 0 0 0 1px #f0c43c inset; }
.sample-head { display: flex; gap: 8px; align-items: center; font-size: 12px; margin-bottom: 4px; }
.sample-head .step { font-weight: 600; }
.badge { border-radius: 8px; padding: 0 7px; background: var(--panel); border: 1px solid var(--line); }
.badge.ok { background: #e6f4ea; border-color: #9ed3ad; }
.badge.bad { background: #fbeaea; border-color: #e5a9a9; }
.badge.aha { background: #fff4cc; border-color: #f0c43c; }
.question { font-size: 13px; margin-bottom: 4px; }
.gold { color: var(--muted); margin-left: 8px; }
.sample-body { display: grid; grid-template-columns: 1fr auto; gap: 12px; align-items: start; }
.completion { white-space: pre-wrap; word-break: break-word;
  font: 12.5px/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--panel);
  padding: 6px 8px; border-radius: 4px; }
.think { background: #e8f0fe; color: #1a3c78; }
.answer { background: #dff3e4; color: #11562a; font-weight: 700; }
.tag { color: #8a8f98; }
.reflect { background: #ffe58a; color: #5c4200; border-bottom: 2px solid #e0a800; }
.stated { text-decoration: underline dotted #b3261e; text-underline-offset: 3px; }
table.breakdown { font-size: 12px; margin: 0; }
table.breakdown td, table.breakdown th { padding: 1px 6px; }
table.breakdown td:last-child { text-align: right; font-variant-numeric: tabular-nums; }
table.breakdown tr.total td { font-weight: 600; background: var(--panel); }
.trajectory { font-size: 12px; margin-top: 4px; }
pre.config { background: var(--panel); padding: 8px 10px; border-radius: 4px; font-size: 12px; overflow-x: auto; }
details { margin: 6px 0; }
"""

JS = r"""
"use strict";
const DATA = JSON.parse(document.getElementById("report-data").textContent);
const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}
const fmt = (v) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : String(v));

function completion(segments) {
  const box = el("div", "completion");
  for (const [cls, text] of segments) box.append(el("span", cls, text));
  return box;
}

function breakdown(s) {
  const table = el("table", "breakdown");
  const head = table.createTHead().insertRow();
  head.append(el("th", "", "reward"), el("th", "", "value"));
  const body = table.createTBody();
  const row = (name, value, cls) => {
    const r = body.insertRow();
    if (cls) r.className = cls;
    r.insertCell().textContent = name;
    r.insertCell().textContent = fmt(value);
  };
  for (const [name, value] of Object.entries(s.rewards || {})) row(name, value);
  if (typeof s.reward === "number") row("total (weighted)", s.reward, "total");
  if (typeof s.advantage === "number") row("advantage", s.advantage, "total");
  return table;
}

function card(s) {
  const c = el("article", "sample" + (s.aha ? " aha" : ""));
  const head = el("div", "sample-head");
  head.append(el("span", "step", "step " + s.step));
  if (s.id !== undefined) head.append(el("code", "", s.id));
  if (s.correct === true) head.append(el("span", "badge ok", "correct"));
  if (s.correct === false) head.append(el("span", "badge bad", "wrong"));
  if (s.aha) head.append(el("span", "badge aha", "aha candidate"));
  if (s.reflections) head.append(el("span", "badge", s.reflections + " reflective"));
  if (s.source) head.append(el("span", "muted", "from " + s.source));
  c.append(head);
  if (s.question !== undefined) {
    const q = el("div", "question");
    q.append(el("b", "", "Q: "), document.createTextNode(s.question));
    if (s.answer !== undefined) q.append(el("span", "gold", "gold: " + s.answer));
    c.append(q);
  }
  const body = el("div", "sample-body");
  body.append(completion(s.segments), breakdown(s));
  c.append(body);
  if (s.trajectory && s.trajectory.length > 1) {
    c.append(el("div", "trajectory muted", "answers stated: " + s.trajectory.join(" → ")));
  }
  return c;
}

const state = { run: 0, index: 0 };

function show() {
  const run = DATA.runs[state.run];
  const list = $("sample-list");
  const empty = !run || run.steps.length === 0;
  for (const id of ["prev-step", "next-step", "step-select", "step-range"]) $(id).disabled = empty;
  if (empty) {
    list.replaceChildren(el("p", "muted empty", "This run logged no samples (samples.jsonl is absent or empty)."));
    $("step-info").textContent = "";
    return;
  }
  state.index = Math.max(0, Math.min(state.index, run.steps.length - 1));
  const step = run.steps[state.index];
  let samples = run.samples[String(step)] || [];
  if ($("aha-only").checked) samples = samples.filter((s) => s.aha);
  list.replaceChildren(...samples.map(card));
  if (!samples.length) list.append(el("p", "muted", "No sample at this step matches the filter."));
  list.dataset.step = String(step);
  $("step-select").value = String(step);
  $("step-range").value = String(state.index);
  $("step-info").textContent = `${samples.length} samples · step ${state.index + 1} of ${run.steps.length} logged`;
}

function selectRun(i) {
  state.run = i;
  const run = DATA.runs[i];
  const select = $("step-select");
  select.replaceChildren(...run.steps.map((s) => { const o = el("option", "", s); o.value = String(s); return o; }));
  $("step-range").max = String(Math.max(0, run.steps.length - 1));
  state.index = run.steps.length - 1;  // the latest step first
  show();
}

function go(delta) { state.index += delta; show(); }

function init() {
  const runSelect = $("run-select");
  DATA.runs.forEach((run, i) => { const o = el("option", "", run.name); o.value = String(i); runSelect.append(o); });
  if (DATA.runs.length < 2) $("run-label").hidden = true;
  runSelect.addEventListener("change", () => selectRun(Number(runSelect.value)));
  $("prev-step").addEventListener("click", () => go(-1));
  $("next-step").addEventListener("click", () => go(1));
  $("step-select").addEventListener("change", (e) => {
    state.index = DATA.runs[state.run].steps.indexOf(Number(e.target.value));
    show();
  });
  $("step-range").addEventListener("input", (e) => { state.index = Number(e.target.value); show(); });
  $("aha-only").addEventListener("change", show);
  document.addEventListener("keydown", (e) => {
    if (["INPUT", "SELECT", "TEXTAREA"].includes(e.target.tagName)) return;
    if (e.key === "ArrowLeft") go(-1);
    if (e.key === "ArrowRight") go(1);
  });
  selectRun(0);

  const aha = $("aha-list");
  for (const run of DATA.aha) {
    if (DATA.aha.length > 1) aha.append(el("h3", "", run.name));
    if (!run.candidates.length) aha.append(el("p", "muted", "No aha candidate found in this run's logs."));
    else {
      const n = run.candidates.length;
      aha.append(el("p", "muted", `${n} candidate${n > 1 ? "s" : ""}, oldest first.`));
    }
    for (const s of run.candidates) aha.append(card(s));
  }
  document.body.dataset.ready = "1";
}
init();
"""
