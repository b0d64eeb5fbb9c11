/*
 * Scoreboard embeddable client: the live top 10 on any page, with no build step and no
 * dependencies. Served by the edge at /static/scoreboard-client.js (styles, optional:
 * /static/scoreboard-client.css). The API is documented in the README ("Embeddable client").
 *
 *   const conn = Scoreboard.connect({ url, onUpdate(board) {}, onStatus(status, info) {} });
 *   const view = Scoreboard.mount(element, { url, highlightUserId });
 *
 * Transport: a WebSocket to /ws (optionally with a single-use ticket from getTicket, so no
 * token ever appears in a URL); reconnects with exponential backoff and full jitter; falls back
 * to polling GET /api/leaderboard when WebSockets are unavailable or refused, and keeps trying
 * to get back to the socket.
 */
(function (global) {
  "use strict";

  var VERSION = "1.0.0";
  var CLOSE_UNAUTHENTICATED = 4401;
  var CLOSE_ORIGIN = 4403;
  var CLOSE_LIMIT = 4429;
  var CLOSE_TOKEN_EXPIRED = 4440;
  // Socket failures (without ever opening) before the HTTP fallback is tried.
  var FAILURES_BEFORE_POLLING = 3;

  function noop() {}

  function backoffDelay(attempt, baseMs, capMs, random) {
    // Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^attempt)].
    var ceiling = Math.min(capMs, baseMs * Math.pow(2, Math.min(attempt, 16)));
    return Math.floor((random || Math.random)() * ceiling);
  }

  function trimSlash(url) {
    return url.replace(/\/+$/, "");
  }

  function sameBoard(a, b) {
    if (!a || !b || a.length !== b.length) return false;
    for (var i = 0; i < a.length; i++) {
      if (a[i].userId !== b[i].userId || a[i].score !== b[i].score || a[i].rank !== b[i].rank ||
          a[i].username !== b[i].username) return false;
    }
    return true;
  }

  /**
   * Open a live connection to the board. Options:
   *   url            edge base URL (default: this page's origin)
   *   onUpdate       function (board): board = {top10, sequence, timestamp, source: "ws"|"http"}
   *   onStatus       function (status, info): "connecting" | "live" | "polling" |
   *                  "reconnecting" | "offline" | "closed"; info = {attempt, retryInMs, reason}
   *   getTicket      async function () -> a ticket from POST /api/ws-ticket, or null for an
   *                  anonymous viewer (the edge must allow those: SCOREBOARD_WS_ANONYMOUS)
   *   webSocket      false to poll only (default true)
   *   pollIntervalMs polling period while WebSockets are unavailable (default 5000)
   *   backoffBaseMs, backoffCapMs   reconnect backoff (default 500, 15000)
   *   heartbeatMs    how often to PING an idle socket (default 25000)
   *   onRank         function (update): the signed-in viewer's own rank, live (RANK_UPDATE
   *                  data); given, every signed-in socket sends SUBSCRIBE_RANK once acked
   *   rankBoard      the board whose rank to follow (default: the default board)
   *   board          the board to show (default: the default board); board = {top10, sequence,
   *                  timestamp, source, board, period} names it and its period
   * Returns {status, board, rank, reconnect(), refresh(), subscribeRank(board),
   * unsubscribeRank(), subscribeBoard(board), close()}.
   */
  function connect(options) {
    options = options || {};
    var base = trimSlash(options.url || global.location.origin);
    var onUpdate = options.onUpdate || noop;
    var onStatus = options.onStatus || noop;
    var getTicket = options.getTicket || null;
    var pollMs = options.pollIntervalMs || 5000;
    var baseMs = options.backoffBaseMs || 500;
    var capMs = options.backoffCapMs || 15000;
    var heartbeatMs = options.heartbeatMs || 25000;
    var canSocket = options.webSocket !== false && typeof global.WebSocket === "function";

    var conn = { status: "connecting", board: null, version: VERSION };
    // The board shown (null: the default one); subscribeBoard() changes it.
    var boardId = options.board || null;
    var socket = null;
    var socketOpened = false;
    var snapshotOnSocket = false;
    var attempt = 0;
    var failuresWithoutOpen = 0;
    var socketTimer = null;
    var pollTimer = null;
    var heartbeatTimer = null;
    var lastMessageAt = 0;
    var polling = false;
    var closed = false;
    var generation = 0;
    // False after the edge refused an anonymous socket: poll until reconnect() is called.
    var canSocketNow = true;
    var rankFeed = personalRank(options, conn);

    function setStatus(status, info) {
      if (closed && status !== "closed") return;
      var changed = conn.status !== status;
      conn.status = status;
      if (changed || (info && info.retryInMs !== undefined)) onStatus(status, info || {});
    }

    function offline() {
      return global.navigator && global.navigator.onLine === false;
    }

    function accept(data, source, force) {
      if (data.board && data.board !== (boardId || "default")) return; // another board's
      var current = conn.board;
      // A later period is newer whatever its sequence (a reset starts the count again).
      if (current && data.period && current.period && data.period !== current.period) {
        if (data.period < current.period) return;
        force = true;
      }
      if (current && (data.sequence || 0) === current.sequence &&
          sameBoard(current.top10, data.top10 || [])) return; // nothing new
      if (!force && current) {
        var seq = data.sequence || 0;
        // Snapshots only move forward; an HTTP answer without a sequence counts if it differs.
        if (seq && current.sequence && seq <= current.sequence) return;
        if (!seq && sameBoard(current.top10, data.top10)) return;
      }
      conn.board = {
        top10: data.top10 || [],
        sequence: data.sequence || 0,
        timestamp: data.timestamp || data.lastUpdated || null,
        source: source,
        board: data.board || boardId || "default",
        period: data.period || null,
      };
      try {
        onUpdate(conn.board);
      } catch (err) {
        if (global.console) global.console.error(err);
      }
    }

    // ---- HTTP ----------------------------------------------------------------------------
    function fetchBoard() {
      var query = boardId ? "?board=" + encodeURIComponent(boardId) : "";
      return global.fetch(base + "/api/leaderboard" + query, {
        headers: { accept: "application/json" },
        cache: "no-cache", // revalidate with the ETag: a 304 costs the edge almost nothing
      }).then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      }).then(function (body) {
        if (!body || body.success !== true) throw new Error("bad response");
        accept(body.data, "http", false);
        return conn.board;
      });
    }

    function schedulePoll(delay) {
      clearTimeout(pollTimer);
      pollTimer = setTimeout(pollOnce, delay);
    }

    function pollOnce() {
      if (closed || !polling) return;
      if (offline()) { setStatus("offline"); return; }
      fetchBoard().then(function () {
        if (!polling) return;
        if (conn.status !== "live") setStatus("polling", { pollIntervalMs: pollMs });
        schedulePoll(pollMs + backoffDelay(0, pollMs / 5, pollMs / 5));
      }, function () {
        if (!polling) return;
        setStatus("reconnecting", { reason: "http" });
        schedulePoll(pollMs);
      });
    }

    function startPolling() {
      if (polling || closed) return;
      polling = true;
      pollOnce();
    }

    function stopPolling() {
      polling = false;
      clearTimeout(pollTimer);
    }

    // ---- WebSocket -----------------------------------------------------------------------
    function socketUrl(ticket) {
      var params = [];
      if (ticket) params.push("ticket=" + encodeURIComponent(ticket));
      if (boardId) params.push("board=" + encodeURIComponent(boardId));
      var url = base.replace(/^http/, "ws") + "/ws";
      return params.length ? url + "?" + params.join("&") : url;
    }

    function scheduleSocket(delay, reason) {
      clearTimeout(socketTimer);
      if (closed || !canSocket) return;
      if (!polling) setStatus(offline() ? "offline" : "reconnecting",
        { attempt: attempt, retryInMs: delay, reason: reason });
      socketTimer = setTimeout(openSocket, delay);
    }

    function retrySocket(reason, minimumMs) {
      attempt += 1;
      var delay = Math.max(minimumMs || 0, backoffDelay(attempt, baseMs, capMs));
      if (!socketOpened) {
        failuresWithoutOpen += 1;
        if (failuresWithoutOpen >= FAILURES_BEFORE_POLLING) startPolling();
      }
      scheduleSocket(delay, reason);
    }

    function stopHeartbeat() {
      clearInterval(heartbeatTimer);
      heartbeatTimer = null;
    }

    function startHeartbeat(ws) {
      stopHeartbeat();
      heartbeatTimer = setInterval(function () {
        if (ws !== socket || ws.readyState !== 1) return;
        if (Date.now() - lastMessageAt > heartbeatMs * 2) {
          ws.close(4000, "no answer"); // a half-open connection: start over
          return;
        }
        if (Date.now() - lastMessageAt >= heartbeatMs) ws.send('{"type":"PING"}');
      }, Math.max(1000, Math.floor(heartbeatMs / 2)));
    }

    function openSocket() {
      socketTimer = null;
      if (closed || !canSocket) return;
      if (offline()) { setStatus("offline"); return; }
      var mine = ++generation;
      socketOpened = false;
      if (!polling && conn.status !== "live") {
        setStatus(conn.board ? "reconnecting" : "connecting", { attempt: attempt });
      }
      var ticketed = Promise.resolve(getTicket ? getTicket() : null);
      ticketed.then(function (ticket) {
        if (closed || mine !== generation) return;
        var ws;
        try {
          // No subprotocol is offered: the edge refuses (4401, 4403) without selecting one,
          // and a browser that offered one would fail the handshake instead of seeing why.
          ws = new global.WebSocket(socketUrl(ticket));
        } catch (err) {
          retrySocket("socket");
          return;
        }
        socket = ws;
        socketOpened = false;
        snapshotOnSocket = false;
        var refusal = null;
        ws.onopen = function () {
          lastMessageAt = Date.now();
        };
        ws.onmessage = function (event) {
          if (ws !== socket) return;
          lastMessageAt = Date.now();
          var message;
          try { message = JSON.parse(event.data); } catch (err) { return; }
          if (message.type === "CONNECTION_ACK") {
            socketOpened = true;
            attempt = 0;
            failuresWithoutOpen = 0;
            stopPolling();
            startHeartbeat(ws);
            var viewer = message.data && message.data.userId;
            rankFeed.acked(ws, viewer);
            setStatus("live", { userId: viewer });
          } else if (message.type === "RANK_UPDATE") {
            rankFeed.update(message.data);
          } else if (message.type === "LEADERBOARD_UPDATE") {
            // The first snapshot on a new socket is the truth, whatever came before.
            accept(message.data, "ws", !snapshotOnSocket);
            snapshotOnSocket = true;
          } else if (message.type === "ERROR") {
            refusal = message.data && message.data.code;
            rankFeed.refused(refusal);
          }
        };
        ws.onclose = function (event) {
          if (ws !== socket) return;
          socket = null;
          rankFeed.acked(null, null);
          stopHeartbeat();
          if (closed) return;
          var code = event.code;
          if (code === CLOSE_TOKEN_EXPIRED) {
            // The ticket's token expired; a fresh one is a click away, no backoff needed.
            attempt = 0;
            scheduleSocket(0, "token-expired");
          } else if ((code === CLOSE_UNAUTHENTICATED && !ticket) || code === CLOSE_ORIGIN) {
            // This edge refuses anonymous viewers (or this origin): poll instead, and try the
            // socket again only when asked (reconnect(), e.g. after signing in).
            canSocketNow = false;
            startPolling();
          } else if (code === CLOSE_LIMIT) {
            retrySocket(refusal || "limit", capMs / 2);
          } else if (code === 1012) {
            // The edge is restarting and every viewer of it is coming back at once: spread
            // them over a few seconds rather than one.
            attempt = Math.max(attempt, 2);
            retrySocket("restart");
          } else {
            retrySocket(refusal || "closed");
          }
        };
      }, function () {
        // No ticket (the edge is unreachable, or the session is gone): back off and retry.
        if (!closed && mine === generation) retrySocket("ticket");
      });
    }

    function start() {
      if (canSocket && canSocketNow) openSocket();
      else startPolling();
    }

    function dropSocket(reason) {
      generation++;
      clearTimeout(socketTimer);
      socketTimer = null;
      stopHeartbeat();
      var old = socket;
      socket = null;
      if (old) old.close(1000, reason);
    }

    function onOnline() {
      if (closed) return;
      attempt = 0;
      failuresWithoutOpen = 0;
      dropSocket("online");
      if (polling) { clearTimeout(pollTimer); pollOnce(); }
      if (canSocket && canSocketNow) openSocket();
      else startPolling();
    }

    function onOffline() {
      // The network is gone: a socket that looks open is dead; wait for "online".
      if (closed) return;
      dropSocket("offline");
      clearTimeout(pollTimer);
      setStatus("offline");
    }

    function onVisible() {
      if (global.document.visibilityState === "visible" && !socket && !closed &&
          canSocket && canSocketNow && !socketTimer) start();
    }

    global.addEventListener("online", onOnline);
    global.addEventListener("offline", onOffline);
    if (global.document) global.document.addEventListener("visibilitychange", onVisible);

    conn.reconnect = function () {
      // Start over now (for example with a ticket after signing in, or without after signing
      // out). The open socket, if any, is replaced.
      if (closed) return;
      canSocketNow = true;
      attempt = 0;
      failuresWithoutOpen = 0;
      dropSocket("reconnecting");
      if (!canSocket) { startPolling(); return; }
      openSocket();
    };

    conn.refresh = function () {
      return fetchBoard();
    };

    // Show another board: the socket moves with SUBSCRIBE (the board's newest snapshot comes
    // at once); polling asks for it. The next snapshot replaces the old board's.
    conn.subscribeBoard = function (id) {
      boardId = id && id !== "default" ? id : null;
      conn.board = null;
      snapshotOnSocket = false;
      if (socket && socket.readyState === 1 && socketOpened) {
        try {
          socket.send(JSON.stringify({ type: "SUBSCRIBE", data: { board: boardId || "default" } }));
        } catch (err) { /* the close handler reconnects, naming the board */ }
      }
      if (polling || !socketOpened) fetchBoard().catch(noop);
    };
    conn.subscribeRank = rankFeed.subscribe;
    conn.unsubscribeRank = rankFeed.unsubscribe;

    conn.close = function () {
      closed = true;
      generation++;
      clearTimeout(socketTimer);
      stopPolling();
      stopHeartbeat();
      global.removeEventListener("online", onOnline);
      global.removeEventListener("offline", onOffline);
      if (global.document) global.document.removeEventListener("visibilitychange", onVisible);
      if (socket) socket.close(1000, "closed");
      socket = null;
      conn.status = "closed";
      onStatus("closed", {});
    };

    // A first paint from HTTP (cached by the edge) while the socket opens.
    if (options.prefetch !== false) fetchBoard().catch(noop);
    start();
    return conn;
  }

  // ---- Personal rank ---------------------------------------------------------------------
  // The signed-in viewer's own rank on its socket: SUBSCRIBE_RANK once the socket is acked
  // for a user (again on every new socket), RANK_UPDATE to onRank, UNSUBSCRIBE_RANK on demand.
  // conn.rank is the latest update ({board, rank, score, totalPlayers, percentile, tier,
  // distanceToNext, reason, overtakenBy, ...}), null while none has come on this socket.
  function personalRank(options, conn) {
    var onRank = options.onRank || null;
    var wanted = !!onRank;
    var board = options.rankBoard || null;
    var socket = null; // the acked socket of a signed-in viewer, if any
    conn.rank = null;

    function send(message) {
      if (!socket || socket.readyState !== 1) return;
      try { socket.send(JSON.stringify(message)); } catch (err) { /* the close handler retries */ }
    }

    function subscribe() {
      send({ type: "SUBSCRIBE_RANK", data: board ? { board: board } : {} });
    }

    return {
      acked: function (ws, userId) {
        socket = ws && userId ? ws : null;
        conn.rank = null;
        if (wanted) subscribe();
      },
      update: function (data) {
        if (!wanted || !data) return;
        conn.rank = data;
        try {
          if (onRank) onRank(data);
        } catch (err) {
          if (global.console) global.console.error(err);
        }
      },
      refused: function (code) {
        // Anonymous or service sockets cannot follow a rank: stop asking on this socket.
        if (code === "RANK_NEEDS_USER") socket = null;
      },
      subscribe: function (boardId) {
        if (boardId !== undefined) board = boardId || null;
        wanted = true;
        subscribe();
      },
      unsubscribe: function () {
        wanted = false;
        conn.rank = null;
        send({ type: "UNSUBSCRIBE_RANK" });
      },
    };
  }

  // ---- Rendering -------------------------------------------------------------------------

  function ordinal(n) {
    var rem100 = n % 100;
    if (rem100 >= 11 && rem100 <= 13) return n + "th";
    return n + ({ 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th");
  }

  function formatScore(n) {
    return Number(n).toLocaleString("en-US");
  }

  function el(tag, className, text) {
    var node = global.document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function restartClass(node, className) {
    node.classList.remove(className);
    void node.offsetWidth; // reflow, so the CSS animation runs again
    node.classList.add(className);
  }

  function reducedMotion() {
    return global.matchMedia && global.matchMedia("(prefers-reduced-motion: reduce)").matches;
  }

  /**
   * Describe what changed between two top-10 lists, for screen readers (at most a few lines).
   */
  function describeChanges(before, after, highlightUserId) {
    if (!before) return [];
    var old = {};
    before.forEach(function (e) { old[e.userId] = e; });
    var lines = [];
    after.forEach(function (e) {
      var was = old[e.userId];
      var who = e.userId === highlightUserId ? "You" : e.username;
      if (!was) {
        lines.push(who + (who === "You" ? " enter" : " enters") + " the top 10 at " +
          ordinal(e.rank) + " with " + formatScore(e.score) + " points.");
      } else if (e.rank < was.rank) {
        lines.push(who + " moved up to " + ordinal(e.rank) + " with " + formatScore(e.score) +
          " points.");
      } else if (e.score !== was.score && e.userId === highlightUserId) {
        lines.push("Your score is now " + formatScore(e.score) + ".");
      }
    });
    var leader = after[0];
    var oldLeader = before[0];
    if (leader && (!oldLeader || oldLeader.userId !== leader.userId)) {
      lines.unshift((leader.userId === highlightUserId ? "You take" : leader.username + " takes") +
        " 1st place.");
    }
    return lines.slice(0, 3);
  }

  /**
   * Render the live top 10 into `element` and keep it current. Options: those of connect(),
   * plus highlightUserId (a user id to mark as "you"), announce (default true: polite
   * screen-reader announcements of changes), caption (an accessible name for the list).
   * Returns {connection, setHighlight(userId), render(top10), destroy()}.
   */
  function mount(element, options) {
    options = options || {};
    var doc = global.document;
    var highlight = options.highlightUserId || null;
    var rows = {};
    var current = null;
    var animate = options.animate !== false;

    element.classList.add("sb-board");
    var list = el("ol", "sb-rows");
    list.setAttribute("aria-label", options.caption || "Top 10");
    var empty = el("p", "sb-empty", "No scores yet. Complete an action to lead the board!");
    var live = el("div", "sb-visually-hidden");
    live.setAttribute("aria-live", "polite");
    live.setAttribute("aria-atomic", "true");
    element.replaceChildren(list, empty, live);
    var announceTimer = null;
    var pending = [];

    function announce(lines) {
      if (options.announce === false || !lines.length) return;
      pending = pending.concat(lines).slice(-3);
      if (announceTimer) return;
      announceTimer = setTimeout(function () {
        announceTimer = null;
        live.textContent = pending.join(" ");
        pending = [];
      }, 400);
    }

    function makeRow(entry) {
      var li = el("li", "sb-row");
      li.dataset.userId = entry.userId;
      var rank = el("span", "sb-rank");
      var name = el("span", "sb-name");
      var move = el("span", "sb-move");
      move.setAttribute("aria-hidden", "true");
      var score = el("span", "sb-score");
      li.append(rank, name, move, score);
      return li;
    }

    function fill(li, entry, tied, previous) {
      var rank = li.querySelector(".sb-rank");
      var name = li.querySelector(".sb-name");
      var move = li.querySelector(".sb-move");
      var score = li.querySelector(".sb-score");
      rank.textContent = String(entry.rank);
      rank.title = tied ? "tied for " + ordinal(entry.rank) : ordinal(entry.rank);
      if (tied) rank.append(el("span", "sb-tie", "tie"));
      name.textContent = entry.username;
      if (entry.userId === highlight) {
        name.append(" ", el("span", "sb-you", "you"));
        li.classList.add("sb-me");
      } else {
        li.classList.remove("sb-me");
      }
      score.textContent = formatScore(entry.score);
      score.append(el("span", "sb-visually-hidden", " points"));
      li.dataset.rank = String(entry.rank);
      li.dataset.score = String(entry.score);
      li.classList.toggle("sb-tied", tied);
      if (!previous) return;
      var marked = true;
      if (previous === "new") {
        move.textContent = "new";
        move.className = "sb-move sb-new";
        restartClass(li, "sb-enter");
      } else if (entry.rank !== previous.rank || entry.score !== previous.score) {
        if (entry.rank < previous.rank) {
          move.textContent = "\u25B2" + (previous.rank - entry.rank);
          move.className = "sb-move sb-up";
        } else if (entry.rank > previous.rank) {
          move.textContent = "\u25BC" + (entry.rank - previous.rank);
          move.className = "sb-move sb-down";
        } else {
          move.textContent = "";
          move.className = "sb-move";
          marked = false;
        }
        if (entry.score !== previous.score) {
          var delta = entry.score - previous.score;
          var old = li.querySelector(".sb-delta");
          if (old) old.remove();
          var bump = el("span", "sb-delta", (delta > 0 ? "+" : "") + formatScore(delta));
          bump.setAttribute("aria-hidden", "true");
          li.append(bump);
          restartClass(li, "sb-bumped");
        }
      } else {
        marked = false;
      }
      if (marked) {
        // Movement markers say what just happened; they fade once it is old news.
        clearTimeout(li._sbClear);
        li._sbClear = setTimeout(function () {
          move.textContent = "";
          move.className = "sb-move";
        }, 8000);
      }
    }

    function render(top10) {
      var before = {};
      var positions = {};
      var motion = animate && !reducedMotion() && typeof list.animate === "function";
      Object.keys(rows).forEach(function (id) {
        if (motion) positions[id] = rows[id].getBoundingClientRect().top;
      });
      if (current) current.forEach(function (e) { before[e.userId] = e; });
      var seen = {};
      var ordered = top10.map(function (entry, index) {
        var li = rows[entry.userId] || (rows[entry.userId] = makeRow(entry));
        seen[entry.userId] = true;
        var tied = (index > 0 && top10[index - 1].rank === entry.rank) ||
          (index + 1 < top10.length && top10[index + 1].rank === entry.rank);
        fill(li, entry, tied, current ? (before[entry.userId] || "new") : null);
        return li;
      });
      Object.keys(rows).forEach(function (id) {
        if (!seen[id]) { rows[id].remove(); delete rows[id]; }
      });
      list.replaceChildren.apply(list, ordered);
      empty.hidden = top10.length > 0;
      if (motion) {
        // FLIP: each row starts where it was and glides to where it is now.
        ordered.forEach(function (li) {
          var was = positions[li.dataset.userId];
          if (was === undefined) return;
          var dy = was - li.getBoundingClientRect().top;
          if (Math.abs(dy) < 1) return;
          li.animate([{ transform: "translateY(" + dy + "px)" }, { transform: "none" }],
            { duration: 500, easing: "cubic-bezier(.2,.8,.2,1)" });
        });
      }
      announce(describeChanges(current, top10, highlight));
      current = top10.slice();
    }

    var connection = null;
    var view = {
      render: render,
      setHighlight: function (userId) {
        highlight = userId || null;
        if (current) { var keep = current; current = null; render(keep); }
      },
      destroy: function () {
        if (connection) connection.close();
        clearTimeout(announceTimer);
        element.replaceChildren();
        element.classList.remove("sb-board");
      },
    };
    var userUpdate = options.onUpdate || noop;
    if (options.connect !== false) {
      var connectOptions = {};
      Object.keys(options).forEach(function (k) { connectOptions[k] = options[k]; });
      connectOptions.onUpdate = function (board) {
        render(board.top10);
        userUpdate(board);
      };
      connection = connect(connectOptions);
    }
    view.connection = connection;
    if (doc && !current) empty.hidden = true; // until the first snapshot says otherwise
    return view;
  }

  global.Scoreboard = {
    version: VERSION,
    connect: connect,
    mount: mount,
    ordinal: ordinal,
    backoffDelay: backoffDelay,
    describeChanges: describeChanges,
  };
})(window);
