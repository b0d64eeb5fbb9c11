// The Scoreboard page: the live top 10 (through the embeddable client), accounts, the player's
// card (pushed live by RANK_UPDATE on the socket), the action catalog and a friends view. No
// build step, no external assets.
//
// Tokens: the access token lives only in this closure (never in a URL, localStorage or a
// cookie readable by script). The refresh token is an httpOnly SameSite=Strict cookie the edge
// sets; the page refreshes before the access token expires and on reload, so a reload keeps
// the session. localStorage holds one non-secret hint ("there may be a session") so anonymous
// visits do not send a refresh request that can only fail.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const Scoreboard = window.Scoreboard;
  const ordinal = Scoreboard.ordinal;
  const fmt = (n) => Number(n).toLocaleString("en-US");
  const HINT_KEY = "scoreboard:maybe-signed-in";
  // Only while the rank cannot be pushed (no socket: polling): how often the card is asked for.
  const CARD_REFRESH_MS = 15000;
  // A signed-in socket that gives no RANK_UPDATE this long after it opened (an older edge):
  // the card is asked for over HTTP instead.
  const RANK_FEED_GRACE_MS = 3000;
  // The players around you are asked for on a rank change, at most this often.
  const AROUND_MIN_MS = 3000;
  const TOAST_MS = 6000;

  // ---- Errors ----------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
    }
  }

  function seconds(n) {
    return n === 1 ? "1 second" : `${n} seconds`;
  }

  function wait(n) {
    if (!n) return "a moment";
    if (n >= 120) return `${Math.ceil(n / 60)} minutes`;
    return seconds(n);
  }

  // A clear sentence for every refusal the player can meet.
  function explain(err, action) {
    const name = action ? `“${action.name}”` : "That action";
    const n = err.retryAfter;
    switch (err.code) {
      case "RATE_LIMITED":
        return `Slow down! You have completed too many actions in the last minute. Try again in ${wait(n)}.`;
      case "DAILY_LIMIT_REACHED":
        return action && action.dailyLimit > 1
          ? `Already done today: ${name} counts ${action.dailyLimit} times a day. Come back tomorrow!`
          : `Already done today: ${name} counts once a day. Come back tomorrow!`;
      case "COOLDOWN_ACTIVE":
        return `${name} is cooling down. Ready again in ${wait(n)}.`;
      case "TICKET_REQUIRED":
        return `Start ${name} first, then claim it when it is done.`;
      case "TICKET_TOO_EARLY":
        return `Not so fast: ${name} is not finished yet.`;
      case "TICKET_EXPIRED":
        return `Your attempt at ${name} took too long and expired. Start again.`;
      case "TICKET_USED":
        return `That attempt at ${name} was already claimed. Start a new one.`;
      case "TICKET_INVALID":
      case "TICKET_MISMATCH":
        return `That attempt at ${name} is not valid any more. Start again.`;
      case "ACTION_NOT_FOUND":
      case "ACTION_INACTIVE":
        return `${name} is not available any more.`;
      case "USER_BANNED":
        return "Your account cannot score right now.";
      case "INVALID_CREDENTIALS":
        return "Wrong username or password.";
      case "LOGIN_RATE_LIMITED":
        return `Too many failed sign-ins. Try again in ${wait(n)}.`;
      case "USERNAME_TAKEN":
        return "That username is taken. Pick another one.";
      case "NETWORK":
        return "Cannot reach the server. Check your connection and try again.";
      case "UNAVAILABLE":
        return "The game is busy for a moment. Try again in a few seconds.";
      case "SESSION_ENDED":
        return "Your session has ended. Please sign in again.";
      default:
        if (err.status >= 500) return "Something went wrong on our side. Try again in a moment.";
        return err.message || "Something went wrong.";
    }
  }

  // ---- Messages --------------------------------------------------------------------------
  let messageTimer = null;
  function showMessage(kind, text) {
    const error = $("error");
    const notice = $("notice");
    clearTimeout(messageTimer);
    (kind === "error" ? notice : error).hidden = true;
    const target = kind === "error" ? error : notice;
    target.textContent = text;
    target.hidden = false;
    messageTimer = setTimeout(() => { target.hidden = true; }, kind === "error" ? 12000 : 6000);
  }
  // Messages dismiss themselves; Escape or a click dismisses them sooner.
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") clearMessages(); });
  $("error").addEventListener("click", () => { $("error").hidden = true; });
  $("notice").addEventListener("click", () => { $("notice").hidden = true; });
  const showError = (text) => showMessage("error", text);
  const showNotice = (text) => showMessage("ok", text);
  function clearMessages() {
    $("error").hidden = true;
    $("notice").hidden = true;
  }

  // ---- HTTP --------------------------------------------------------------------------------
  const session = { token: null, expiresAt: 0, user: null, timer: null };
  let refreshing = null;

  async function send(path, { method = "GET", body, headers = {}, token = session.token } = {}) {
    const h = { accept: "application/json", ...headers };
    if (body !== undefined) h["content-type"] = "application/json";
    if (token) h.authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: h,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
        cache: "no-store",
      });
    } catch (err) {
      throw new ApiError(0, "NETWORK", "network error");
    }
    let payload = null;
    try { payload = await response.json(); } catch (err) { payload = null; }
    if (response.ok && payload && payload.success !== false) return payload.data;
    const retry = parseInt(response.headers.get("retry-after") || "", 10);
    throw new ApiError(
      response.status,
      (payload && payload.code) || (response.status === 503 ? "UNAVAILABLE" : `HTTP_${response.status}`),
      (payload && payload.error) || response.statusText,
      Number.isFinite(retry) ? retry : undefined,
    );
  }

  // An authenticated call: an expired access token is refreshed once, then the call retried.
  async function api(path, options = {}) {
    try {
      return await send(path, options);
    } catch (err) {
      if (err.status !== 401 || !session.token) throw err;
      const outcome = await refreshSession();
      if (outcome === "ok") return send(path, options);
      if (outcome === "denied") {
        signedOut("SESSION_ENDED");
        throw new ApiError(401, "SESSION_ENDED", "session ended");
      }
      throw err;
    }
  }

  // ---- Session -----------------------------------------------------------------------------
  function adopt(data) {
    session.token = data.accessToken;
    session.expiresAt = Date.now() + data.expiresIn * 1000;
    try { localStorage.setItem(HINT_KEY, "1"); } catch (err) { /* storage may be off */ }
    scheduleRefresh(data.expiresIn * 1000 * 0.8);
  }

  function scheduleRefresh(delayMs) {
    clearTimeout(session.timer);
    session.timer = setTimeout(async () => {
      const outcome = await refreshSession();
      if (outcome === "denied") signedOut("SESSION_ENDED");
      else if (outcome === "error") {
        // The edge is unreachable: try again soon, before the token runs out if possible.
        const left = session.expiresAt - Date.now();
        scheduleRefresh(Math.max(2000, Math.min(10000, left / 4)));
      }
    }, Math.max(1000, delayMs));
  }

  // Rotate the refresh cookie for a new access token. "ok", "denied" (no valid session) or
  // "error" (could not ask). Tabs take turns (Web Locks), so two tabs never present the same
  // refresh token, which the server would treat as theft and revoke the session.
  function refreshSession() {
    if (refreshing) return refreshing;
    const run = async () => {
      try {
        const data = await send("/api/auth/refresh", {
          method: "POST",
          headers: { "X-Requested-With": "scoreboard" },
          token: null,
        });
        adopt(data);
        return "ok";
      } catch (err) {
        return err.status === 401 || err.status === 403 ? "denied" : "error";
      }
    };
    const locked = navigator.locks
      ? navigator.locks.request("scoreboard-refresh", run)
      : run();
    refreshing = locked.finally(() => { refreshing = null; });
    return refreshing;
  }

  const channel = "BroadcastChannel" in window ? new BroadcastChannel("scoreboard-session") : null;

  function signedOut(reason) {
    const had = session.token !== null;
    clearTimeout(session.timer);
    session.token = null;
    session.user = null;
    session.expiresAt = 0;
    try { localStorage.removeItem(HINT_KEY); } catch (err) { /* ignore */ }
    showSignedOut();
    if (reason) showError(explain(new ApiError(401, reason, "")));
    if (had) view.connection.reconnect();
  }

  async function startSession(data, user) {
    adopt(data);
    session.user = user || (await api("/api/auth/me"));
    showSignedIn();
    view.connection.reconnect(); // the socket now carries who is watching
    if (channel) channel.postMessage({ type: "signed-in" });
  }

  // Settled once the session is restored (or known to be absent); the socket waits for it so
  // its first connection already says who is watching.
  let settle;
  const ready = new Promise((resolve) => { settle = resolve; });

  async function restore() {
    let hinted = false;
    try { hinted = localStorage.getItem(HINT_KEY) === "1"; } catch (err) { hinted = true; }
    if (!hinted) { showSignedOut(); return; }
    const outcome = await refreshSession();
    if (outcome === "ok") {
      try {
        session.user = await api("/api/auth/me");
        showSignedIn();
        return;
      } catch (err) { /* fall through */ }
    }
    if (outcome === "denied") {
      try { localStorage.removeItem(HINT_KEY); } catch (err) { /* ignore */ }
    }
    session.token = null;
    showSignedOut();
    if (outcome === "error") {
      // The edge could not be asked (it may be restarting): try again once it answers.
      restoreLater = true;
      showError(explain(new ApiError(0, "NETWORK", "")));
    }
  }
  let restoreLater = false;

  async function getTicket() {
    await ready;
    if (!session.token) return null;
    try {
      const data = await api("/api/ws-ticket", { method: "POST" });
      return data.ticket;
    } catch (err) {
      if (err.status === 401) return null; // signed out meanwhile: watch anonymously
      throw err;
    }
  }

  // ---- Connection state -------------------------------------------------------------------
  const STATUS_TEXT = {
    connecting: "Connecting…",
    live: "Live",
    polling: "Live · refreshing every few seconds",
    reconnecting: "Reconnecting…",
    offline: "Offline",
    closed: "Disconnected",
  };

  function onStatus(status) {
    rankStatus(status);
    const box = $("status");
    box.dataset.status = status;
    $("status-text").textContent = STATUS_TEXT[status] || status;
    $("retry").hidden = !(status === "reconnecting" || status === "offline");
    if ((status === "live" || status === "polling") && restoreLater && !session.token) {
      restoreLater = false;
      restore().then(() => { if (session.token) view.connection.reconnect(); });
    }
  }

  // ---- The board -------------------------------------------------------------------------
  // The player's card (filled below); declared first, as the board's callbacks use it.
  // feed: RANK_UPDATEs arrive on this socket (no asking); feedTimer: the grace before falling
  // back to HTTP; rank: the latest RANK_UPDATE.
  const card = {
    data: null, missing: false, total: null, timer: null, lastFetch: 0,
    feed: false, feedTimer: null, rank: null,
  };
  let lastBoard = null;
  const view = Scoreboard.mount($("board"), {
    caption: "Top 10 players",
    getTicket,
    onStatus,
    onUpdate(board) {
      boardShown(board);
      const stamp = board.timestamp ? new Date(board.timestamp) : null;
      $("updated").textContent = stamp && !Number.isNaN(stamp.getTime())
        ? `Last change ${stamp.toLocaleTimeString()}`
        : "Live standings";
      if (board.board && board.board !== "default") return; // the card is the default board's
      lastBoard = board;
      cardFromBoard(board.top10);
    },
    onRank: cardFromRank,
  });
  $("retry").addEventListener("click", () => view.connection.reconnect());

  // ---- Boards and resets (issue 17) -------------------------------------------------------
  // The board switcher (GET /api/boards), the countdown to the shown board's next reset, and
  // its last period's winners. A LEADERBOARD_UPDATE of a new period (a reset) reloads the
  // boards, so the countdown and the winners follow at once.
  const boards = { list: [], shown: "default", period: null, timer: null, loading: null, again: false };

  function shownBoard() {
    return boards.list.find((b) => b.boardId === boards.shown) || null;
  }

  function loadBoards() {
    // A load asked for while one is in flight runs again after it: the one in flight may have
    // been answered before the reset that asked for this one.
    if (boards.loading) { boards.again = true; return boards.loading; }
    boards.loading = send("/api/boards", { token: null })
      .then((list) => { boards.list = list; renderBoards(); })
      .catch(() => { /* the switcher stays as it was; the next reset or minute tries again */ })
      .finally(() => {
        boards.loading = null;
        if (boards.again) { boards.again = false; loadBoards(); }
      });
    return boards.loading;
  }

  function renderBoards() {
    const select = $("board-select");
    const options = boards.list.map((b) => {
      const option = document.createElement("option");
      option.value = b.boardId;
      option.textContent = b.name;
      return option;
    });
    select.replaceChildren(...options);
    select.value = boards.shown;
    $("boards-bar").hidden = boards.list.length < 2; // one board: nothing to switch
    renderCountdown();
    renderWinners();
  }

  function until(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d) return `${d}d ${h}h ${m}m`;
    if (h) return `${h}h ${m}m ${s % 60}s`;
    return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  }

  function renderCountdown() {
    const b = shownBoard();
    const out = $("reset-countdown");
    if (!b) { out.textContent = ""; return; }
    const next = b.nextResetAt ? new Date(b.nextResetAt).getTime() : null;
    const period = `Period ${fmt(boards.period || b.currentPeriod)}`;
    if (!next) { out.textContent = `${period} · never resets`; return; }
    const left = next - Date.now();
    out.textContent = left > 0 ? `${period} · resets in ${until(left)}` : `${period} · resetting…`;
    out.title = `Next reset: ${new Date(next).toLocaleString()} (${b.timeZone})`;
    if (left <= 0 && !boards.loading) setTimeout(loadBoards, 1500);
  }

  function renderWinners() {
    const b = shownBoard();
    const winners = b && b.lastClosedPeriod ? b.lastWinners : [];
    $("winners").hidden = winners.length === 0;
    if (!winners.length) return;
    $("winners-title").textContent = `Period ${fmt(b.lastClosedPeriod)} winners`;
    $("winners-list").replaceChildren(...winners.map((w) => {
      const li = document.createElement("li");
      li.dataset.userId = w.userId;
      li.textContent = `${ordinal(w.rank)} ${w.username} · ${fmt(w.score)}`;
      return li;
    }));
  }

  // Every shown snapshot: a new period of the shown board is a reset.
  function boardShown(board) {
    if (board.board && board.board !== boards.shown) return;
    // The period known so far: the last snapshot's, else the board list's (a snapshot may not
    // have named one yet).
    const shown = shownBoard();
    const known = boards.period || (shown && shown.currentPeriod) || null;
    if (board.period && known && board.period > known) loadBoards();
    boards.period = board.period || boards.period;
    renderCountdown();
  }

  function showBoard(id) {
    if (id === boards.shown) return;
    boards.shown = id;
    boards.period = null;
    const b = shownBoard();
    $("board-title").textContent = b && id !== "default" ? `Top 10 · ${b.name}` : "Top 10";
    $("updated").textContent = "Waiting for the board…";
    view.connection.subscribeBoard(id);
    renderCountdown();
    renderWinners();
  }

  $("board-select").addEventListener("change", (event) => showBoard(event.currentTarget.value));
  boards.timer = setInterval(renderCountdown, 1000);
  setInterval(loadBoards, 60000);
  loadBoards();

  // ---- The player's card -----------------------------------------------------------------

  function setStat(id, text) {
    const node = $(id);
    if (node.textContent === text) return;
    node.textContent = text;
    node.classList.remove("changed");
    void node.offsetWidth;
    node.classList.add("changed");
  }

  function renderCard() {
    const d = card.data;
    renderRankExtras(d);
    if (!d) {
      setStat("card-rank", "–");
      setStat("card-score", "0");
      setStat("card-distance", "–");
      setStat("card-total", card.total === null ? "–" : fmt(card.total));
      $("card-note").textContent = card.missing
        ? "Complete an action to get on the board."
        : "";
      return;
    }
    setStat("card-rank", ordinal(d.rank));
    setStat("card-score", fmt(d.score));
    setStat("card-distance", d.inTop10 ? "In it!" : fmt(d.distanceFromTop10));
    setStat("card-total", fmt(d.totalUsers));
    $("card-note").textContent = d.inTop10
      ? (d.rank === 1 ? "You lead the board. Stay there!" : `You are in the top 10. ${ordinal(1)} place is ${fmt(leaderGap(d))} points away.`)
      : `${fmt(d.distanceFromTop10)} more points to enter the top 10.`;
  }

  function leaderGap(d) {
    if (!lastBoard || !lastBoard.top10.length) return 0;
    return Math.max(0, lastBoard.top10[0].score - d.score);
  }

  async function loadCard() {
    if (!session.user) return;
    const userId = session.user.userId;
    card.lastFetch = Date.now();
    try {
      card.data = await api(`/api/leaderboard/user/${encodeURIComponent(userId)}`);
      card.missing = false;
    } catch (err) {
      if (err.code !== "USER_NOT_FOUND") return; // keep what we show; the next update retries
      card.data = null;
      card.missing = true;
      try {
        const page = await send("/api/leaderboard/entries?pageSize=1", { token: null });
        card.total = page.totalUsers;
      } catch (inner) { /* the count is a nicety */ }
    }
    if (session.user && session.user.userId === userId) renderCard();
  }

  function scheduleCard(delayMs) {
    if (!session.user || card.timer) return;
    card.timer = setTimeout(() => { card.timer = null; loadCard(); }, delayMs);
  }

  // Live: what the pushed top 10 tells directly (rank and score inside it, the distance from
  // outside it) is applied at once; the rank outside the top 10 and the player count come
  // from the server, at most every CARD_REFRESH_MS (jittered, so viewers do not ask together).
  function cardFromBoard(top10) {
    if (!session.user) return;
    const me = top10.find((e) => e.userId === session.user.userId);
    const d = card.data;
    if (me) {
      const changed = !d || d.rank !== me.rank || d.score !== me.score;
      card.data = {
        ...(d || { totalUsers: card.total || top10.length }),
        userId: me.userId, username: me.username, rank: me.rank, score: me.score,
        inTop10: true, distanceFromTop10: 0,
      };
      card.missing = false;
      renderCard();
      if (changed && !d && !card.feed) scheduleCard(500);
    } else if (d) {
      if (d.inTop10) {
        // Dropped out: the rank feed says where to; without it, ask.
        if (!card.feed) scheduleCard(300 + Math.random() * 700);
      } else if (top10.length >= 10) {
        card.data = { ...d, distanceFromTop10: Math.max(0, top10[9].score + 1 - d.score) };
        renderCard();
      }
    }
    if (!card.feed) scheduleCard(CARD_REFRESH_MS * (0.75 + Math.random() * 0.5));
  }

  // ---- Personal live rank (RANK_UPDATE) -------------------------------------------------
  // The card follows the rank the socket pushes: "initial" at once, then "self", "overtaken"
  // (with a toast naming who), "threshold" and "moved". No polling while it does; without a
  // socket (polling) or from an edge that pushes no rank, the card is asked for over HTTP.
  function cardFromRank(u) {
    if (!session.user || !u || u.userId !== session.user.userId) return;
    card.feed = true;
    clearTimeout(card.feedTimer);
    card.feedTimer = null;
    clearTimeout(card.timer);
    card.timer = null;
    if (!u.rank) {
      card.data = null;
      card.missing = true;
      card.total = u.totalPlayers;
      card.rank = u;
      renderCard();
      renderAround([]);
      return;
    }
    const prev = card.data;
    const inTop10 = u.rank <= 10;
    let distance = 0;
    if (!inTop10) {
      distance = lastBoard && lastBoard.top10.length >= 10
        ? Math.max(0, lastBoard.top10[9].score + 1 - u.score)
        : (prev ? prev.distanceFromTop10 : 0);
    }
    card.data = {
      userId: u.userId,
      username: (prev && prev.username) || session.user.displayName,
      rank: u.rank,
      score: u.score,
      inTop10,
      distanceFromTop10: distance,
      totalUsers: u.totalPlayers,
    };
    card.rank = u;
    card.missing = false;
    renderCard();
    if (u.reason === "overtaken" && u.overtakenBy) {
      showToast(`${u.overtakenBy.username} passed you — you are now #${fmt(u.rank)}`);
    }
    scheduleAround();
  }

  function tierName(tier) {
    if (tier === null || tier === undefined || tier === "") return null;
    if (typeof tier === "object") return tier.name || tier.id || null;
    return String(tier);
  }

  function percentText(p) {
    if (p === null || p === undefined) return "–";
    // "top 3.2 %", kept on one line.
    return `top ${Number(p).toLocaleString("en-US", { maximumFractionDigits: 1 })}\u00a0%`;
  }

  // What only the pushed rank knows: percentile, tier, points to the next better score.
  function renderRankExtras(d) {
    const r = d ? card.rank : null;
    const pct = r ? r.percentile : d && d.percentile;
    setStat("card-percentile", percentText(pct));
    let next = "–";
    if (d && d.rank === 1) next = "Leader";
    else if (r && r.distanceToNext !== null && r.distanceToNext !== undefined) next = fmt(r.distanceToNext);
    setStat("card-next", next);
    const tier = r ? tierName(r.tier) : null;
    $("card-tier-stat").hidden = tier === null;
    if (tier !== null) setStat("card-tier", tier);
  }

  // Called with every connection status: a new socket sends SUBSCRIBE_RANK itself (the
  // client does), so the feed starts over; anything but "live" means no feed.
  function rankStatus(status) {
    if (status === "live") {
      if (session.user && !card.feed) awaitRankFeed();
      return;
    }
    if (card.feed) {
      card.feed = false;
      card.rank = null;
      if (session.user && status === "polling") scheduleCard(500);
    }
  }

  function awaitRankFeed() {
    clearTimeout(card.feedTimer);
    card.feedTimer = setTimeout(() => {
      card.feedTimer = null;
      if (session.user && !card.feed) loadCard();
    }, RANK_FEED_GRACE_MS);
  }

  function resetRankFeed() {
    card.feed = false;
    card.rank = null;
    clearTimeout(card.feedTimer);
    card.feedTimer = null;
    clearTimeout(around.timer);
    around.timer = null;
    around.last = 0;
    renderAround([]);
    hideToast();
  }

  // ---- The players around you ------------------------------------------------------------
  const around = { timer: null, last: 0, busy: false };

  // On a rank change, at most every AROUND_MIN_MS (the first change after a quiet spell at
  // once, later ones coalesced into one trailing request).
  function scheduleAround() {
    if (around.timer || !session.user) return;
    const wait = Math.max(0, around.last + AROUND_MIN_MS - Date.now());
    around.timer = setTimeout(() => { around.timer = null; loadAround(); }, wait);
  }

  async function loadAround() {
    if (!session.user || !card.data) return;
    const userId = session.user.userId;
    around.last = Date.now();
    try {
      const data = await api(`/api/leaderboard/user/${encodeURIComponent(userId)}/around?count=1`);
      if (session.user && session.user.userId === userId) renderAround(data.entries);
    } catch (err) { /* keep what is shown; the next change asks again */ }
  }

  function renderAround(entries) {
    const list = $("around");
    const me = session.user && session.user.userId;
    list.replaceChildren(...entries.map((e) => {
      const li = document.createElement("li");
      li.dataset.userId = e.userId;
      if (e.userId === me) li.className = "me";
      const at = document.createElement("span");
      at.className = "at";
      at.textContent = `#${fmt(e.rank)}`;
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = e.userId === me ? `${e.username} (you)` : e.username;
      const score = document.createElement("span");
      score.textContent = fmt(e.score);
      li.append(at, who, score);
      remember(e.username, e.userId);
      return li;
    }));
    $("around-box").hidden = entries.length === 0;
  }

  // ---- The toast ---------------------------------------------------------------------------
  // A polite live region that stays in the page (so screen readers hear what is put in it);
  // empty, it is not shown.
  let toastTimer = null;
  function showToast(text) {
    const toast = $("toast");
    clearTimeout(toastTimer);
    toast.textContent = text;
    toastTimer = setTimeout(hideToast, TOAST_MS);
  }
  function hideToast() {
    clearTimeout(toastTimer);
    toastTimer = null;
    $("toast").textContent = "";
  }
  $("toast").addEventListener("click", hideToast);
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") hideToast(); });

  // ---- Friends -----------------------------------------------------------------------------
  // A list of names or player ids, kept per player in localStorage as {id, name} pairs. Ids
  // are used as they are; a name is matched (ignoring case) against the players this page has
  // seen: the live top 10, the players around you, earlier friends lists. No API finds a user
  // by name, so other names are reported as unknown.
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const MAX_FRIENDS = 100;
  const seenNames = new Map(); // lower-cased display name -> user id

  function friendsKey() {
    return `scoreboard:friends:${session.user.userId}`;
  }

  function remember(name, userId) {
    if (name && userId) seenNames.set(String(name).toLowerCase(), userId);
  }

  function storedFriends() {
    try {
      const list = JSON.parse(localStorage.getItem(friendsKey()) || "[]");
      return Array.isArray(list) ? list.filter((f) => f && UUID.test(f.id)) : [];
    } catch (err) { return []; }
  }

  function storeFriends(list) {
    try { localStorage.setItem(friendsKey(), JSON.stringify(list)); } catch (err) { /* storage may be off */ }
  }

  function knownNames() {
    if (lastBoard) lastBoard.top10.forEach((e) => remember(e.username, e.userId));
    for (const f of storedFriends()) remember(f.name, f.id);
  }

  // "Alex, 6f1c…-…" -> {friends: [{id, name}], unknown: ["…"]}
  function resolveFriends(text) {
    knownNames();
    const friends = [];
    const unknown = [];
    const seen = new Set();
    for (const raw of text.split(/[,\n]/)) {
      const item = raw.trim();
      if (!item) continue;
      const id = UUID.test(item) ? item.toLowerCase() : seenNames.get(item.toLowerCase());
      if (!id) { unknown.push(item); continue; }
      if (seen.has(id)) continue;
      seen.add(id);
      friends.push({ id, name: UUID.test(item) ? null : item });
    }
    return { friends: friends.slice(0, MAX_FRIENDS), unknown, over: friends.length > MAX_FRIENDS };
  }

  function friendsText(list) {
    return list.map((f) => f.name || f.id).join(", ");
  }

  async function loadFriends(list) {
    const note = $("friends-note");
    try {
      const data = await api("/api/leaderboard/users", {
        method: "POST",
        body: { userIds: list.map((f) => f.id) },
      });
      for (const e of data.entries) remember(e.username, e.userId);
      // Names as the board shows them now (a friend may have been added by id).
      const named = list.map((f) => {
        const entry = data.entries.find((e) => e.userId === f.id);
        return entry && entry.username ? { id: f.id, name: entry.username } : f;
      });
      storeFriends(named);
      renderFriends(data.entries);
      return true;
    } catch (err) {
      if (err.code !== "SESSION_ENDED") {
        note.textContent = explain(err);
        note.hidden = false;
      }
      return false;
    }
  }

  function renderFriends(entries) {
    const me = session.user && session.user.userId;
    const rows = [...entries].sort((a, b) => {
      if (a.ranked !== b.ranked) return a.ranked ? -1 : 1;
      return (a.listRank || 0) - (b.listRank || 0);
    }).map((e) => {
      const tr = document.createElement("tr");
      tr.dataset.userId = e.userId;
      if (e.userId === me) tr.className = "me";
      const cells = e.ranked
        ? [`#${fmt(e.listRank)}`, e.username, fmt(e.score), `#${fmt(e.rank)}`]
        : ["–", e.userId === me ? session.user.displayName : (friendName(e.userId) || e.userId), "–", "not ranked yet"];
      if (e.userId === me) cells[1] += " (you)";
      cells.forEach((text, index) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (!e.ranked && index === 3) td.className = "unranked";
        tr.append(td);
      });
      return tr;
    });
    $("friends-rows").replaceChildren(...rows);
    $("friends-table").hidden = rows.length === 0;
  }

  function friendName(userId) {
    const f = storedFriends().find((x) => x.id === userId);
    return f && f.name;
  }

  $("friends-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!session.user) return;
    const note = $("friends-note");
    const { friends, unknown, over } = resolveFriends($("friends-input").value);
    const notes = [];
    if (unknown.length) {
      notes.push(`Not found: ${unknown.join(", ")}. Use the player's id, or a name shown on the board.`);
    }
    if (over) notes.push(`Only the first ${MAX_FRIENDS} are compared.`);
    note.textContent = notes.join(" ");
    note.hidden = notes.length === 0;
    const button = event.currentTarget.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      if (await loadFriends(friends)) $("friends-input").value = friendsText(storedFriends());
    } finally {
      button.disabled = false;
    }
  });

  function showFriends() {
    $("friends").hidden = false;
    $("friends-my-id").textContent = session.user.userId;
    const list = storedFriends();
    $("friends-input").value = friendsText(list);
    $("friends-note").hidden = true;
    renderFriends([]);
    if (list.length) loadFriends(list);
  }

  function hideFriends() {
    $("friends").hidden = true;
    $("friends-rows").replaceChildren();
    $("friends-table").hidden = true;
    $("friends-input").value = "";
  }

  // ---- Actions ---------------------------------------------------------------------------
  let catalog = [];
  const attempts = {}; // actionId -> {ticket, notBefore (ms), expiresAt (ms)}
  const cooldownUntil = {}; // actionId -> ms, from a COOLDOWN_ACTIVE answer
  const busy = {};
  let rateLimitedUntil = 0;
  let ticker = null;

  function idempotencyKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function loadActions() {
    if (!session.user) return;
    try {
      const data = await api("/api/actions");
      catalog = data.actions;
      renderActions();
    } catch (err) {
      if (err.code !== "SESSION_ENDED") showError(explain(err));
    }
  }

  function clock(ms) {
    const s = Math.max(0, Math.ceil(ms / 1000));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  // What an action looks like right now: {state, label, note, enabled}.
  function actionState(a, now) {
    const attempt = attempts[a.actionId];
    const available = Math.max(
      a.availableAt ? Date.parse(a.availableAt) : 0,
      cooldownUntil[a.actionId] || 0,
    );
    const left = a.remainingToday === null ? a.dailyLimit : a.remainingToday;
    const done = a.dailyLimit - left;
    const tally = a.dailyLimit > 1 ? `${done} of ${a.dailyLimit} done today` : "Once a day";
    if (left <= 0) {
      return { state: "done", label: "Done today", note: a.dailyLimit > 1 ? `All ${a.dailyLimit} done today ✓` : "Done today ✓", enabled: false };
    }
    if (busy[a.actionId]) return { state: "busy", label: "Sending…", note: tally, enabled: false };
    if (attempt) {
      if (now >= attempt.expiresAt) {
        delete attempts[a.actionId];
      } else if (now < attempt.notBefore) {
        return { state: "running", label: `In progress ${clock(attempt.notBefore - now)}`, note: "Claim it when the timer ends", enabled: false };
      } else {
        return { state: "claim", label: `Claim +${fmt(a.points)}`, note: `Claim before ${new Date(attempt.expiresAt).toLocaleTimeString()}`, enabled: now >= rateLimitedUntil };
      }
    }
    if (available > now) {
      return { state: "cooldown", label: `Ready in ${clock(available - now)}`, note: `Cooling down · ${tally}`, enabled: false };
    }
    if (rateLimitedUntil > now) {
      return { state: "limited", label: `Wait ${clock(rateLimitedUntil - now)}`, note: tally, enabled: false };
    }
    if (a.requiresTicket) {
      return { state: "ready", label: "Start", note: `Takes ${seconds(a.minDurationSeconds)} · ${tally}`, enabled: true };
    }
    return { state: "ready", label: "Complete", note: tally, enabled: true };
  }

  function renderActions() {
    const list = $("actions");
    const now = Date.now();
    let countdown = false;
    const items = catalog.map((a) => {
      let li = list.querySelector(`li[data-action-id="${CSS.escape(a.actionId)}"]`);
      if (!li) {
        li = document.createElement("li");
        li.className = "action";
        li.dataset.actionId = a.actionId;
        const main = document.createElement("div");
        const title = document.createElement("h3");
        title.id = `action-${a.actionId}`;
        const points = document.createElement("span");
        points.className = "points";
        const desc = document.createElement("p");
        desc.className = "action-desc";
        main.append(title, desc);
        const stateLine = document.createElement("p");
        stateLine.className = "action-state";
        const button = document.createElement("button");
        button.type = "button";
        button.addEventListener("click", () => onAction(a.actionId));
        li.append(main, stateLine, button);
      }
      const title = li.querySelector("h3");
      title.replaceChildren(document.createTextNode(a.name));
      const points = document.createElement("span");
      points.className = "points";
      points.textContent = `+${fmt(a.points)} pts`;
      title.append(points);
      li.querySelector(".action-desc").textContent = a.description;
      const s = actionState(a, now);
      li.dataset.state = s.state;
      li.querySelector(".action-state").textContent = s.note;
      const button = li.querySelector("button");
      button.disabled = !s.enabled;
      button.replaceChildren(document.createTextNode(s.label));
      const hidden = document.createElement("span");
      hidden.className = "sb-visually-hidden";
      hidden.textContent = `: ${a.name}`;
      button.append(hidden);
      if (["cooldown", "running", "limited", "claim"].includes(s.state)) countdown = true;
      return li;
    });
    // Touch the list only when its items change: moving a focused button would drop focus.
    const same = items.length === list.children.length &&
      items.every((li, i) => list.children[i] === li);
    if (!same) list.replaceChildren(...items);
    if (countdown && !ticker) ticker = setInterval(renderActions, 1000);
    if (!countdown && ticker) { clearInterval(ticker); ticker = null; }
  }

  async function onAction(actionId) {
    const a = catalog.find((x) => x.actionId === actionId);
    if (!a || busy[actionId]) return;
    const attempt = attempts[actionId];
    if (a.requiresTicket && !attempt) {
      await startAttempt(a);
    } else {
      await complete(a, attempt ? attempt.ticket : undefined);
    }
  }

  async function startAttempt(a) {
    busy[a.actionId] = true;
    renderActions();
    try {
      const data = await api("/api/actions/start", { method: "POST", body: { actionId: a.actionId } });
      attempts[a.actionId] = {
        ticket: data.ticket,
        notBefore: Date.parse(data.notBefore) + 250, // a little slack for clock skew
        expiresAt: Date.parse(data.expiresAt),
      };
      showNotice(`${a.name}: started. Claim your points when the timer ends.`);
    } catch (err) {
      handleActionError(err, a);
    } finally {
      busy[a.actionId] = false;
      renderActions();
    }
  }

  async function complete(a, ticket) {
    busy[a.actionId] = true;
    renderActions();
    const body = ticket ? { actionId: a.actionId, ticket } : { actionId: a.actionId };
    const headers = { "Idempotency-Key": idempotencyKey() };
    try {
      let data;
      try {
        data = await api("/api/actions/complete", { method: "POST", body, headers });
      } catch (err) {
        // A lost answer: ask again with the same key; the server replays, never counts twice.
        if (err.code !== "NETWORK") throw err;
        data = await api("/api/actions/complete", { method: "POST", body, headers });
      }
      delete attempts[a.actionId];
      showNotice(`+${fmt(data.increment)} points for “${a.name}”! Your score is ${fmt(data.newScore)}, rank ${ordinal(data.rank)}.`);
      card.data = {
        ...(card.data || { totalUsers: card.total || 1, inTop10: false, distanceFromTop10: 0 }),
        score: data.newScore,
        rank: data.rank,
      };
      if (lastBoard && lastBoard.top10.length >= 10 && data.newScore <= lastBoard.top10[9].score) {
        card.data.inTop10 = false;
        card.data.distanceFromTop10 = lastBoard.top10[9].score + 1 - data.newScore;
      } else if (data.rank <= 10) {
        card.data.inTop10 = true;
        card.data.distanceFromTop10 = 0;
      }
      card.missing = false;
      renderCard();
      clearTimeout(card.timer);
      card.timer = null;
      if (!card.feed) scheduleCard(400); // live, the "self" RANK_UPDATE follows by itself
    } catch (err) {
      handleActionError(err, a);
    } finally {
      busy[a.actionId] = false;
      await loadActions();
    }
  }

  function handleActionError(err, a) {
    if (err.code === "SESSION_ENDED") return; // already explained
    const now = Date.now();
    if (err.code === "RATE_LIMITED") rateLimitedUntil = now + (err.retryAfter || 60) * 1000;
    if (err.code === "COOLDOWN_ACTIVE" && err.retryAfter) cooldownUntil[a.actionId] = now + err.retryAfter * 1000;
    if (err.code === "DAILY_LIMIT_REACHED") a.remainingToday = 0;
    if (err.code && err.code.startsWith("TICKET_") && err.code !== "TICKET_TOO_EARLY") delete attempts[a.actionId];
    showError(explain(err, a));
  }

  // ---- Forms -----------------------------------------------------------------------------
  function selectTab(which) {
    const login = which === "login";
    $("tab-login").setAttribute("aria-selected", String(login));
    $("tab-register").setAttribute("aria-selected", String(!login));
    $("tab-login").tabIndex = login ? 0 : -1;
    $("tab-register").tabIndex = login ? -1 : 0;
    $("login-panel").hidden = !login;
    $("register-panel").hidden = login;
  }
  $("tab-login").addEventListener("click", () => selectTab("login"));
  $("tab-register").addEventListener("click", () => selectTab("register"));
  for (const tab of [$("tab-login"), $("tab-register")]) {
    tab.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
      const next = tab.id === "tab-login" ? "register" : "login";
      selectTab(next);
      $(`tab-${next}`).focus();
    });
  }

  function validate(form) {
    let first = null;
    for (const input of form.querySelectorAll("input")) {
      const valid = input.checkValidity();
      input.setAttribute("aria-invalid", String(!valid));
      if (!valid && !first) first = input;
    }
    if (first) {
      const label = form.querySelector(`label[for="${first.id}"]`);
      const name = label ? label.firstChild.textContent.trim() : first.name;
      showError(`${name}: ${first.validationMessage}`);
      first.focus();
      return false;
    }
    return true;
  }

  async function submit(form, path, body, status) {
    if (!validate(form)) return;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    clearMessages();
    try {
      const data = await send(path, { method: "POST", body, token: null });
      await startSession(data, data.user);
      form.reset();
      showNotice(status(data.user));
      $("me-title").focus();
    } catch (err) {
      showError(explain(err));
    } finally {
      button.disabled = false;
    }
  }

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    submit(form, "/api/auth/login", {
      username: form.elements.username.value.trim(),
      password: form.elements.password.value,
    }, (user) => `Welcome back, ${user.displayName}!`);
  });

  $("register-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const body = {
      username: form.elements.username.value.trim(),
      password: form.elements.password.value,
    };
    const display = form.elements.displayName.value.trim();
    if (display) body.displayName = display;
    submit(form, "/api/auth/register", body, (user) => `Welcome, ${user.displayName}! Complete an action to get on the board.`);
  });

  $("logout").addEventListener("click", async () => {
    const token = session.token;
    try {
      await send("/api/auth/logout", {
        method: "POST",
        body: {},
        headers: { "X-Requested-With": "scoreboard" },
        token,
      });
    } catch (err) { /* signed out locally either way */ }
    signedOut(null);
    if (channel) channel.postMessage({ type: "signed-out" });
    showNotice("You are signed out.");
    $("login-username").focus();
  });

  if (channel) {
    channel.onmessage = async (event) => {
      const type = event.data && event.data.type;
      if (type === "signed-out" && session.token) signedOut(null);
      if (type === "signed-in" && !session.token) {
        if (await refreshSession() === "ok") {
          try {
            session.user = await api("/api/auth/me");
            showSignedIn();
            view.connection.reconnect();
          } catch (err) { session.token = null; }
        }
      }
    };
  }

  // ---- Views -----------------------------------------------------------------------------
  function showSignedIn() {
    $("auth").hidden = true;
    $("me").hidden = false;
    $("play").hidden = false;
    $("me-title").textContent = session.user.displayName;
    view.setHighlight(session.user.userId);
    card.data = null;
    card.missing = false;
    renderCard();
    // The rank comes with the socket (RANK_UPDATE "initial"); ask only if it does not.
    awaitRankFeed();
    loadActions();
    showFriends();
  }

  function showSignedOut() {
    $("auth").hidden = false;
    $("me").hidden = true;
    $("play").hidden = true;
    view.setHighlight(null);
    catalog = [];
    $("actions").replaceChildren();
    card.data = null;
    clearTimeout(card.timer);
    card.timer = null;
    resetRankFeed();
    hideFriends();
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible" || !session.user) return;
    if (session.expiresAt && session.expiresAt - Date.now() < 30000) {
      refreshSession().then((outcome) => { if (outcome === "denied") signedOut("SESSION_ENDED"); });
    }
    if (!card.feed && Date.now() - card.lastFetch > CARD_REFRESH_MS) loadCard();
    loadActions();
  });

  restore().finally(settle);
})();
