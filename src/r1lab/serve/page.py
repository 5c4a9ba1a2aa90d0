"""The chat page served at `/`: one self-contained HTML file, no build step, no external assets.

It streams from /v1/chat/completions with fetch() and renders `reasoning_content` deltas into a
collapsible "Thinking" block above the answer (click its title to fold it).
Only `content` goes back into the history, as the API requires.
"""

import html
import json


def render_chat_page(model_name: str, needs_key: bool) -> str:
    """The page for this server; the model name is escaped for HTML and for the script's JSON."""
    as_js = json.dumps(model_name).replace("<", "\\u003c")  # no "</script>" can end the script early
    return (CHAT_PAGE.replace("{{MODEL_HTML}}", html.escape(model_name)).replace("{{MODEL_JS}}", as_js)
            .replace("{{NEEDS_KEY}}", json.dumps(needs_key)))


CHAT_PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>r1lab chat · {{MODEL_HTML}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 15px/1.5 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
  header { padding: 10px 18px; background: #1d2330; color: #fff; display: flex; gap: 12px; align-items: center; }
  header b { font-weight: 600; } header input { margin-left: auto; }
  main { max-width: 820px; margin: 0 auto; padding: 16px 18px 120px; }
  .msg { margin: 12px 0; padding: 10px 14px; border-radius: 10px; background: #fff; box-shadow: 0 1px 2px #0002; }
  .user { background: #dfe9ff; }
  .role { font-size: 12px; color: #667; text-transform: uppercase; letter-spacing: .05em; }
  details.thinking { margin: 6px 0; border-left: 3px solid #b6bccb; padding: 2px 10px; color: #4a5163; background: #f0f1f4; }
  details.thinking summary { cursor: pointer; font-size: 13px; color: #667; }
  .text { white-space: pre-wrap; word-break: break-word; }
  .meta { font-size: 12px; color: #889; margin-top: 4px; }
  form { position: fixed; bottom: 0; left: 0; right: 0; background: #fff; border-top: 1px solid #dde;
         padding: 12px 18px; display: flex; gap: 8px; justify-content: center; }
  textarea { width: min(680px, 70vw); height: 48px; font: inherit; padding: 6px; }
  button { font: inherit; padding: 0 18px; }
</style>
</head>
<body>
<header><b>r1lab</b><span id="model">{{MODEL_HTML}}</span>
  <input id="key" type="password" placeholder="API key" hidden></header>
<main id="log"></main>
<form id="form">
  <textarea id="prompt" placeholder="Ask something…" autofocus></textarea>
  <button id="send" type="submit">Send</button>
</form>
<script>
const MODEL = {{MODEL_JS}}, NEEDS_KEY = {{NEEDS_KEY}};
const history = [];
const $ = (id) => document.getElementById(id);
if (NEEDS_KEY) { $("key").hidden = false; $("key").value = localStorage.getItem("r1lab-key") || ""; }

function bubble(role) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.innerHTML = '<div class="role"></div>';
  div.firstChild.textContent = role;
  $("log").appendChild(div);
  return div;
}

function addText(parent, cls) {
  const el = document.createElement("div");
  el.className = "text " + (cls || "");
  parent.appendChild(el);
  return el;
}

async function send(prompt) {
  history.push({role: "user", content: prompt});
  addText(bubble("user")).textContent = prompt;
  const box = bubble("assistant");
  const thinking = document.createElement("details");
  thinking.className = "thinking"; thinking.open = true;
  thinking.innerHTML = "<summary>Thinking…</summary>";
  box.appendChild(thinking);
  const reasoning = addText(thinking), answer = addText(box, "answer"), meta = addText(box, "meta");
  const headers = {"Content-Type": "application/json"};
  if (NEEDS_KEY) { localStorage.setItem("r1lab-key", $("key").value); headers.Authorization = "Bearer " + $("key").value; }
  const started = performance.now();
  const response = await fetch("/v1/chat/completions", {method: "POST", headers,
    body: JSON.stringify({model: MODEL, messages: history, stream: true, stream_options: {include_usage: true}})});
  if (!response.ok) {
    const err = await response.json().catch(() => ({error: {message: response.statusText}}));
    answer.textContent = "Error " + response.status + ": " + err.error.message;
    history.pop();
    return;
  }
  const reader = response.body.getReader(), decoder = new TextDecoder();
  let buffer = "", content = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    const events = buffer.split("\n\n");
    buffer = events.pop();
    for (const event of events) {
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) { answer.textContent += "\n[error] " + chunk.error.message; continue; }
      if (chunk.usage) {
        const u = chunk.usage, secs = (performance.now() - started) / 1000;
        meta.textContent = `${u.completion_tokens} tokens (${u.completion_tokens_details.reasoning_tokens} thinking) in ${secs.toFixed(1)} s`;
      }
      for (const choice of chunk.choices) {
        const delta = choice.delta;
        if (delta.reasoning_content) reasoning.textContent += delta.reasoning_content;
        if (delta.content) {
          if (!content) thinking.firstChild.textContent = "Reasoning";
          content += delta.content;
          answer.textContent = content;
        }
        if (choice.finish_reason && !content) thinking.firstChild.textContent = "Reasoning (no answer: " + choice.finish_reason + ")";
      }
    }
    window.scrollTo(0, document.body.scrollHeight);
  }
  history.push({role: "assistant", content});
}

$("form").addEventListener("submit", (e) => {
  e.preventDefault();
  const prompt = $("prompt").value.trim();
  if (!prompt) return;
  $("prompt").value = "";
  $("send").disabled = true;
  send(prompt).catch((err) => bubble("error").append(String(err))).finally(() => { $("send").disabled = false; });
});

// ?q=... sends a first message on load (used for the docs screenshot and quick demos).
const first = new URLSearchParams(location.search).get("q");
if (first) send(first);
</script>
</body>
</html>
"""
