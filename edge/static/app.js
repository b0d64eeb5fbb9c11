// Minimal live board: the full page is built on this in the browser-experience work.
"use strict";
const state = { token: null, user: null, ws: null, seq: -1 };
const $ = (id) => document.getElementById(id);

function render(top10) {
  const board = $("board");
  board.replaceChildren(...top10.map((e) => {
    const li = document.createElement("li");
    for (const text of [String(e.rank), e.username, String(e.score)]) {
      const span = document.createElement("span");
      span.textContent = text;
      li.append(span);
    }
    return li;
  }));
}

function setStatus(kind) { const s = $("status"); s.textContent = kind; s.className = `status ${kind}`; }

async function api(path, options = {}) {
  const headers = { "content-type": "application/json", ...(options.headers || {}) };
  if (state.token) headers.authorization = `Bearer ${state.token}`;
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok || body.success === false) throw new Error(body.error || response.statusText);
  return body.data;
}

async function connect() {
  let url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  if (state.token) {
    const { ticket } = await api("/api/ws-ticket", { method: "POST" });
    url += `?ticket=${encodeURIComponent(ticket)}`;
  }
  const ws = new WebSocket(url);
  state.ws = ws;
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "CONNECTION_ACK") setStatus("live");
    if (msg.type === "LEADERBOARD_UPDATE" && msg.data.sequence > state.seq) {
      state.seq = msg.data.sequence;
      render(msg.data.top10);
    }
  };
  ws.onclose = () => { setStatus("reconnecting"); setTimeout(connect, 1000 + Math.random() * 2000); };
}

async function loadActions() {
  const { actions } = await api("/api/actions");
  $("actions").replaceChildren(...actions.map((a) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.textContent = `${a.name} (+${a.points})`;
    button.onclick = async () => {
      try {
        const r = await api("/api/actions/complete", { method: "POST", body: JSON.stringify({ actionId: a.actionId }) });
        $("message").textContent = `+${r.increment}: score ${r.newScore}, rank ${r.rank}`;
      } catch (err) { $("message").textContent = err.message; }
    };
    li.append(button);
    return li;
  }));
}

$("auth-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const mode = event.submitter.dataset.mode;
  try {
    const data = await api(`/api/auth/${mode}`, { method: "POST", body: JSON.stringify({ username: form.get("username"), password: form.get("password") }) });
    state.token = data.accessToken;
    state.user = data.user;
    $("auth-form").hidden = true;
    $("player").hidden = false;
    $("me").textContent = `Signed in as ${data.user.displayName}`;
    await loadActions();
    if (state.ws) state.ws.close();
  } catch (err) { $("message").textContent = err.message; }
});

$("logout").addEventListener("click", async () => {
  try { await api("/api/auth/logout", { method: "POST", body: "{}" }); } catch (err) { /* signed out anyway */ }
  state.token = null;
  location.reload();
});

fetch("/api/leaderboard").then((r) => r.json()).then((b) => b.success && render(b.data.top10));
connect();
