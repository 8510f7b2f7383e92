// One agent's page: status, send box (+ /model), inbox, transcript, stats, log, terminal.
"use strict";

(() => {
  const {api, el, setText, setClass, armed, badge, lastTurnText, duration} = Hive;
  const NAME = document.getElementById("agent-head").dataset.agent;
  let row = null;
  let features = {};
  const messages = new Map();  // id -> {tr, data}
  const turns = new Map();     // id -> {details, summary, body, loaded, seqs}

  // --- head -----------------------------------------------------------------------------------
  function renderHead() {
    if (!row) return;
    const b = badge(row);
    setText(document.getElementById("agent-badge"), b.text);
    setClass(document.getElementById("agent-badge"), `badge state-${b.state}`);
    setText(document.getElementById("agent-model"), row.active_model || "");
    const chip = document.getElementById("agent-last-turn");
    setText(chip, lastTurnText(row.last_turn));
    setClass(chip, `chip turn exit-${row.last_turn ? row.last_turn.exit_class : "none"}`);
    setText(document.getElementById("agent-status"),
            row.failed ? row.failed_reason : row.over_budget ? row.budget_reason
              : row.turn_state === "queued" ? row.queue_reason : row.status_text);
    const pause = document.getElementById("pause-button");
    setText(pause, row.paused ? "resume" : "pause");
    pause.dataset.op = row.paused ? "resume" : "pause";
    setText(document.getElementById("inbox-count"), row.inbox_depth);
    const picker = document.getElementById("model-picker");
    if (document.activeElement !== picker && row.active_model) {
      if (!Array.from(picker.options).some((o) => o.value === row.active_model)) {
        picker.append(el("option", {text: row.active_model}));
      }
      if (picker.value !== row.active_model) picker.value = row.active_model;
    }
  }

  // Every action answers next to the buttons: its outcome, its no-op, or its error.
  function actionResult(text, bad) {
    const out = document.getElementById("action-result");
    setText(out, text);
    out.classList.toggle("error", !!bad);
  }

  function setupActions() {
    for (const button of document.querySelectorAll("#agent-actions button")) {
      button.addEventListener("click", () => {
        const run = async () => {
          const op = button.dataset.op, before = row;
          button.disabled = true;
          try {
            const result = await api("POST", `/api/agents/${NAME}/${op}`, {});
            actionResult(op === "destroy" ? `destroyed (state kept in ${result.state_dir})`
                                          : Hive.outcome(op, result, before));
            if (op !== "destroy") loadEventsSoon();
          }
          catch (e) { actionResult(`${op}: ${e.message}`, true); }
          finally { button.disabled = false; }
        };
        if ("confirm" in button.dataset) armed(button, run); else run();
      });
    }
  }

  // --- events -----------------------------------------------------------------------------------
  function eventDetail(e) {
    const d = e.data || {};
    return d.reason || d.detail || d.note || d.model || d.op || "";
  }
  let eventsTimer = null;
  async function loadEvents() {
    eventsTimer = null;
    if (!document.getElementById("events-panel").open) return;
    try {
      const {events} = await api("GET", `/api/events?agent=${NAME}&limit=100`);
      document.getElementById("events").replaceChildren(...events.map((e) => el("tr", {},
        el("td", {text: new Date(e.ts * 1000).toLocaleString()}), el("td", {text: e.kind}),
        el("td", {class: "body", text: eventDetail(e)}))));
    } catch (e) { console.error(e); }
  }
  function loadEventsSoon() { if (!eventsTimer) eventsTimer = setTimeout(loadEvents, 300); }

  // --- send box and /model --------------------------------------------------------------------
  function say(text, bad) {
    const out = document.getElementById("send-result");
    setText(out, text);
    out.classList.toggle("error", !!bad);
  }

  // "/model", "/model NAME", "/model NAME --force"; any other "/word" is a mistyped
  // command, never sent as a message ("//" sends a message that starts with "/").
  function parseCommand(text) {
    const t = text.trim();
    if (!t.startsWith("/") || t.startsWith("//")) return null;
    const m = t.match(/^\/model(?:\s+(\S+))?(?:\s+(--force))?\s*$/);
    if (!m) {
      return {error: `not a command: ${t.split(/\s/)[0]} (commands: /model, /model NAME [--force]; ` +
                     "start a message with // to send it with a leading /)"};
    }
    const [, model, force] = m;
    const known = features.models || [];
    if (model && model !== "default" && !force && known.length && !known.includes(model)) {
      return {error: `unknown model '${model}': this hive knows ${known.join(", ")}` +
                     ` (or /model ${model} --force)`};
    }
    return {model, force: !!force};
  }

  function setupModels() {
    const picker = document.getElementById("model-picker");
    for (const m of features.models || []) picker.append(el("option", {value: m, text: m}));
  }

  async function setModel(model, force) {
    if (!features.set_model) {
      say("setting the model needs the control plane's `model` verb, which this hive lacks", true);
      return;
    }
    try {
      await api("POST", "/api/model", {agent: NAME, model, force: !!force});
      say(`model set to ${model}`);
      return true;
    } catch (e) { say(e.message, true); return false; }
  }

  function setupSend() {
    const form = document.getElementById("send-form");
    const body = document.getElementById("send-body");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const text = body.value;
      if (!text.trim()) return;
      const command = parseCommand(text);
      if (command) {
        if (command.error) { say(command.error, true); return; }  // the text stays
        // A command, not a message: the box empties as it is taken, before the request,
        // so it is already empty whether the stream or the response comes first; a
        // refused command puts the text back for the operator to fix.
        body.value = "";
        if (!command.model) say(`model: ${row ? row.active_model : "?"}`);
        else if (!(await setModel(command.model, command.force)) && !body.value) body.value = text;
        return;
      }
      try {
        const sent = text.trimStart().startsWith("//") ? text.trimStart().slice(1) : text;
        const {id} = await api("POST", `/api/agents/${NAME}/messages`, {body: sent});
        body.value = "";
        say(`sent #${id}`);
        loadInbox();
      } catch (e) { say(e.message, true); }
    });
    body.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) form.requestSubmit();
    });
    const picker = document.getElementById("model-picker");
    picker.addEventListener("change", () => { if (picker.value) setModel(picker.value); });
  }

  // --- inbox ----------------------------------------------------------------------------------
  function upsertMessage(m) {
    let entry = messages.get(m.id);
    if (!entry) {
      const tr = el("tr", {dataset: {id: m.id}},
        el("td", {text: m.id}), el("td", {class: "route"}), el("td", {class: "body"}),
        el("td", {class: "state"}), el("td", {class: "when"}));
      entry = {tr, data: m};
      messages.set(m.id, entry);
      const tbody = document.getElementById("inbox");
      // newest first: insert before the first row with a smaller id
      const after = Array.from(tbody.children).find((r) => Number(r.dataset.id) < m.id);
      tbody.insertBefore(tr, after || null);
      while (tbody.children.length > 200) {
        messages.delete(Number(tbody.lastElementChild.dataset.id));
        tbody.lastElementChild.remove();
      }
    }
    entry.data = {...entry.data, ...m};
    const d = entry.data, cells = entry.tr.children;
    setText(cells[1], `${d.from} → ${d.to}`);
    setText(cells[2], d.body);
    const state = d.to === NAME ? (d.state || "pending") : "sent";
    setText(cells[3], state);
    setClass(cells[3], `state ${state}`);
    setText(cells[4], Hive.ago(d.ts));
  }

  let inboxTimer = null;
  function loadInboxSoon() {
    clearTimeout(inboxTimer);
    inboxTimer = setTimeout(loadInbox, 300);
  }
  async function loadInbox() {
    try {
      const {messages: list} = await api("GET", `/api/agents/${NAME}/messages?limit=100`);
      for (const m of list.slice().reverse()) upsertMessage(m);
    } catch (e) { /* next update retries */ }
  }

  // --- transcript -----------------------------------------------------------------------------
  function turnSummaryText(t) {
    const parts = [`turn #${t.id}`, t.model];
    if (t.kick_note) parts.push(`kick: ${t.kick_note}`);
    if (t.message_ids && t.message_ids.length) parts.push(`${t.message_ids.length} message(s)`);
    parts.push(t.ended_at ? `${duration(t.ended_at - t.started_at)} · ${t.exit_class}`
                          : `running ${duration(Math.max(0, Date.now() / 1000 - t.started_at))}`);
    return parts.filter(Boolean).join(" · ");
  }

  function upsertTurn(t) {
    let entry = turns.get(t.id);
    if (!entry) {
      const summary = el("summary");
      const body = el("ol", {class: "events"});
      const details = el("details", {class: "turn", dataset: {id: t.id}}, summary, body);
      entry = {details, summary, body, loaded: false, seqs: new Set(), data: t};
      details.addEventListener("toggle", () => { if (details.open) loadTurn(entry); });
      turns.set(t.id, entry);
      const list = document.getElementById("turns");
      const after = Array.from(list.children).find((d) => Number(d.dataset.id) < t.id);
      list.insertBefore(details, after || null);
      while (!paged && list.children.length > 50) {  // paged back: keep what was asked for
        turns.delete(Number(list.lastElementChild.dataset.id));
        list.lastElementChild.remove();
      }
    }
    entry.data = {...entry.data, ...t};
    setText(entry.summary, turnSummaryText(entry.data));
    setClass(entry.details, `turn exit-${entry.data.exit_class || "running"}`);
    return entry;
  }

  function eventNode(ev) {
    const d = ev.data || {};
    const short = (v) => { const s = typeof v === "string" ? v : JSON.stringify(v); return s && s.length > 600 ? s.slice(0, 600) + "…" : s; };
    switch (ev.kind) {
      case "text": return el("li", {class: "ev text"}, d.text || "");
      case "tool_call": return el("li", {class: "ev call"}, "→ ", el("code", {text: d.name}), " ", short(d.input || {}));
      case "tool_result": return el("li", {class: "ev result" + (d.is_error ? " error" : "")}, "← ", el("code", {text: d.name || ""}), " ", short(d.is_error ? d.error : (d.result ?? d.content ?? "")));
      case "message": return el("li", {class: "ev message"}, `message #${d.id} from ${d.sender}: `, short(d.body));
      default: return el("li", {class: "ev other"}, `${ev.kind} `, short(d));
    }
  }

  function addEvent(entry, ev) {
    if (entry.seqs.has(ev.seq)) return;
    entry.seqs.add(ev.seq);
    const node = eventNode(ev);
    node.dataset.seq = ev.seq;
    const after = Array.from(entry.body.children).find((n) => Number(n.dataset.seq) > ev.seq);
    entry.body.insertBefore(node, after || null);
  }

  async function loadTurn(entry) {
    if (entry.loaded) return;
    entry.loaded = true;
    try {
      const {events} = await api("GET", `/api/turns/${entry.data.id}/events`);
      for (const ev of events) addEvent(entry, ev);
    } catch (e) { entry.loaded = false; }
  }

  async function loadTurns() {
    try {
      const {turns: list} = await api("GET", `/api/agents/${NAME}/turns?limit=30`);
      for (const t of list.slice().reverse()) upsertTurn(t);
      if (!paged) showTurnsEnd(list.length < 30);
    } catch (e) { /* */ }
  }

  // Paging back, 30 turns at a time, to the agent's first turn.
  const PAGE = 30;
  let paged = false;
  function showTurnsEnd(atEnd) {
    document.getElementById("older-turns").hidden = atEnd;
    document.getElementById("turns-end").hidden = !atEnd || turns.size === 0;
  }
  async function loadOlderTurns() {
    const oldest = Math.min(...Array.from(turns.keys()));
    if (!Number.isFinite(oldest)) return;
    paged = true;
    try {
      const {turns: list} = await api("GET", `/api/agents/${NAME}/turns?limit=${PAGE}&before=${oldest}`);
      for (const t of list) upsertTurn(t);
      showTurnsEnd(list.length < PAGE);
    } catch (e) { console.error(e); }
  }

  // The running turn's elapsed time ticks in its summary and in the head.
  function tickRunning() {
    for (const entry of turns.values()) {
      if (!entry.data.ended_at) setText(entry.summary, turnSummaryText(entry.data));
    }
    const chip = document.getElementById("agent-elapsed");
    const running = row && row.turn_id ? turns.get(row.turn_id) : null;
    chip.hidden = !running;
    if (running) setText(chip, `turn #${running.data.id} · ${duration(Date.now() / 1000 - running.data.started_at)}`);
  }

  async function setupJump() {
    const select = document.getElementById("jump-agent");
    select.addEventListener("change", () => {
      if (select.value) location.href = `/agents/${encodeURIComponent(select.value)}`;
    });
    try {
      const {agents} = await api("GET", "/api/agents");
      for (const a of agents) if (a.name !== NAME) select.append(el("option", {value: a.name, text: a.name}));
    } catch (e) { /* the select keeps only this agent */ }
  }

  function setupInboxFold() {
    const panel = document.getElementById("inbox-panel");
    panel.open = localStorage.getItem("hive.inbox.folded") !== "1";
    panel.addEventListener("toggle", () => localStorage.setItem("hive.inbox.folded", panel.open ? "0" : "1"));
  }

  // --- stats ----------------------------------------------------------------------------------
  const charts = new Map();
  window.hiveCharts = charts;  // for the browser tests, as window.hiveTerminal
  const CHARTS = [
    {id: "duration", title: "turn duration (s)", series: ["per turn", "p50", "p95"]},
    {id: "tpm", title: "turns per minute", series: ["turns/min"]},
    {id: "tools", title: "tool calls per turn", series: ["tool calls"]},
    {id: "depth", title: "inbox depth", series: ["depth"], gauge: true},
    {id: "sent", title: "messages sent per turn", series: ["peer", "operator", "manager", "system"]},
    {id: "received", title: "messages received per turn", series: ["peer", "operator", "manager", "system"]},
    {id: "approvals", title: "approval queue", series: ["pending"], gauge: true},
    {id: "notes", title: "notes file size (bytes)", series: ["bytes"], gauge: true},
    {id: "cost", title: "cost per day, last 7 days ($)", series: ["$"]},
  ];
  const COLORS = ["#2f6fdf", "#1a9b5a", "#d9822b", "#b03ab0", "#888"];

  function rolling(values, window, p) {
    return values.map((_, i) => {
      const part = values.slice(Math.max(0, i - window + 1), i + 1).slice().sort((a, b) => a - b);
      return part[Math.min(part.length - 1, Math.round(p / 100 * (part.length - 1)))];
    });
  }

  function aligned(seriesList) {
    const xs = Array.from(new Set(seriesList.flatMap((s) => s.map((p) => p[0])))).sort((a, b) => a - b);
    return [xs, ...seriesList.map((s) => {
      const m = new Map(s.map((p) => [p[0], p[1]]));
      return xs.map((x) => (m.has(x) ? m.get(x) : null));
    })];
  }

  function chartData(id, series, since, now, cost) {
    const get = (k) => series[k] || [];
    switch (id) {
      case "cost": {
        const days = (cost && cost.days) || [];
        return [days.map((d) => Date.parse(d.key + "T00:00:00Z") / 1000), days.map((d) => d.cost_usd)];
      }
      case "duration": {
        const pts = get("turn.duration");
        const ys = pts.map((p) => p[1]);
        return [pts.map((p) => p[0]), ys, rolling(ys, 20, 50), rolling(ys, 20, 95)];
      }
      case "tpm": {
        const ends = Object.keys(series).filter((k) => k.startsWith("turn.exit."))
          .flatMap((k) => series[k].map((p) => p[0]));
        const step = Math.max(60, Math.ceil((now - since) / 60 / 60) * 60);
        const xs = [], ys = [];
        for (let t = Math.floor(since / step) * step; t <= now; t += step) {
          xs.push(t);
          ys.push(ends.filter((e) => e >= t && e < t + step).length / (step / 60));
        }
        return [xs, ys];
      }
      case "tools": return aligned([get("turn.tool_calls")]);
      case "depth": return aligned([get("inbox_depth")]);
      case "sent": return aligned(["peer", "operator", "manager", "system"].map((c) => get(`turn.sent.${c}`)));
      case "received": return aligned(["peer", "operator", "manager", "system"].map((c) => get(`turn.received.${c}`)));
      case "approvals": return aligned([get("approval_queue")]);
      case "notes": return aligned([get("notes_bytes")]);
    }
    return [[]];
  }

  function chartWidth(holder) { return Math.max(220, holder.clientWidth - 8); }

  // Charts follow the window's width (one resize per frame, however many events).
  let resizeQueued = false;
  window.addEventListener("resize", () => {
    if (resizeQueued) return;
    resizeQueued = true;
    requestAnimationFrame(() => {
      resizeQueued = false;
      for (const chart of charts.values()) {
        chart.setSize({width: chartWidth(chart.root.parentElement), height: 170});
      }
    });
  });

  function drawCharts(data) {
    const box = document.getElementById("charts");
    const canChart = typeof uPlot !== "undefined";
    if (!canChart) setText(box, "charts need the browser libraries: run `npm install` in ui/");
    for (const spec of canChart ? CHARTS : []) {
      const d = chartData(spec.id, data.series, data.since, data.now, data.cost);
      let chart = charts.get(spec.id);
      if (!chart) {
        const holder = el("div", {class: "chart", dataset: {chart: spec.id}});
        box.append(holder);
        chart = new uPlot({
          title: spec.title, width: chartWidth(holder), height: 170,
          scales: {x: {time: true}},
          // One cursor for every chart: hovering a time in one shows it in all.
          cursor: {sync: {key: "hive-stats", setSeries: false}},
          series: [{}, ...spec.series.map((label, i) => ({
            label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
            // A gauge holds its value until the next sample: drawn as steps, not slopes.
            paths: spec.gauge && uPlot.paths.stepped ? uPlot.paths.stepped({align: 1}) : undefined,
            stepped: !!spec.gauge,
            points: {show: (spec.id === "duration" && i === 0) || spec.id === "cost" ? true : undefined},
          }))],
        }, d, holder);
        charts.set(spec.id, chart);
      } else {
        chart.setData(d);  // in place: no flicker, no layout jump
      }
      const empty = !d.slice(1).some((ys) => ys.some((y) => y !== null && y !== undefined));
      chart.root.parentElement.dataset.empty = String(empty);
    }
    const s = data.summary;
    const fmt = (v, f) => (v === null || v === undefined ? "–" : f ? f(v) : v);
    const tools = Object.entries(s.tools).sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v}`).join(", ") || "–";
    const rowsHtml = [
      ["turns", s.turns], ["turns/min", fmt(s.turns_per_min, (v) => v.toFixed(2))],
      ["duration p50 / p95", `${fmt(s.duration_p50, duration)} / ${fmt(s.duration_p95, duration)}`],
      ["tool calls / turn", fmt(s.tool_calls_per_turn, (v) => v.toFixed(1))],
      ["exits ok / compact-retry / failure", `${s.exits.ok} / ${s.exits.compact_retry} / ${s.exits.failure}`],
      ["inbox depth now / max", `${fmt(s.inbox_depth)} / ${fmt(s.inbox_depth_max)}`],
      ["since last turn", fmt(s.seconds_since_last_turn, duration)],
      ["notes size", fmt(s.notes_bytes, (v) => `${v} B`)],
      ["tool usage", tools],
      ...costRows(data.cost),
    ];
    document.getElementById("stats-summary").replaceChildren(
      el("dl", {}, ...rowsHtml.flatMap(([k, v]) => [el("dt", {text: k}), el("dd", {text: String(v)})])));
  }

  // What the agent's turns cost (hive.spend), today (UTC) and over 7 days, by model.
  function costRows(cost) {
    if (!cost) return [];
    const money = (x) => `$${(x || 0).toFixed(4)}`;
    const today = cost.agents_today[0] || {}, week = cost.agents_7d[0] || {};
    const tokens = (s) => s.turns === undefined ? "–"
      : `${s.input_tokens} in / ${s.output_tokens} out / ${s.cache_read_tokens} cache read / ${s.cache_creation_tokens} cache write`;
    return [
      ["cost today (UTC) / 7 days", `${money(today.cost_usd)} / ${money(week.cost_usd)}`],
      ["tokens, 7 days", tokens(week)],
      ["by model, 7 days", cost.models_7d.map((m) => `${m.key} ${money(m.cost_usd)}`).join(", ") || "–"],
    ];
  }

  let statsTimer = null;
  function loadStatsSoon() {
    clearTimeout(statsTimer);
    statsTimer = setTimeout(loadStats, 800);
  }
  async function loadStats() {
    const win = Number(document.getElementById("stats-window").value);
    try {
      drawCharts(await api("GET", `/api/stats?agent=${NAME}&since=-${win}`));
    } catch (e) { console.error(e); }
  }

  // --- log viewer -----------------------------------------------------------------------------
  let follower = null, logCursor = "";
  function appendLog(lines) {
    const pre = document.getElementById("log");
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(document.createTextNode(lines.map((l) => l + "\n").join("")));
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }
  async function loadLog() {
    try {
      const data = await api("GET", `/api/agents/${NAME}/log?lines=300`);
      setText(document.getElementById("log-source"), data.source === "journald" ? "(journald)" : "(agent.log)");
      const pre = document.getElementById("log");
      pre.textContent = "";
      appendLog(data.lines);
      logCursor = data.cursor;  // following starts after the last line shown
    } catch (e) { /* */ }
  }
  function setupLog() {
    const follow = document.getElementById("log-follow");
    follow.addEventListener("change", () => {
      if (follower) { follower.close(); follower = null; }
      if (follow.checked) {
        follower = new EventSource(`/api/agents/${NAME}/log/stream?after=${encodeURIComponent(logCursor)}`);
        follower.onmessage = (ev) => { const d = JSON.parse(ev.data); logCursor = d.cursor; appendLog(d.lines); };
      }
    });
  }

  // --- terminal -------------------------------------------------------------------------------
  let term = null, socket = null, fit = null;
  // xterm.js (about 300 KB) is fetched only when the operator opens the terminal.
  function loadOnce(tag, attrs) {
    return new Promise((resolve, reject) => {
      const node = el(tag, attrs);
      node.addEventListener("load", resolve);
      node.addEventListener("error", () => reject(new Error(`could not load ${attrs.src || attrs.href}`)));
      document.head.append(node);
    });
  }
  let xtermLoading = null;
  function loadXterm() {
    if (!xtermLoading) {
      xtermLoading = Promise.all([
        loadOnce("link", {rel: "stylesheet", href: "/vendor/xterm.css"}),
        loadOnce("script", {src: "/vendor/xterm.js"}).then(() => loadOnce("script", {src: "/vendor/addon-fit.js"})),
      ]).catch(() => null);
    }
    return xtermLoading;
  }

  async function openTerminal() {
    if (socket) return;
    const box = document.getElementById("terminal");
    setText(box, "loading the terminal…");
    await loadXterm();
    if (socket) return;
    if (typeof Terminal === "undefined" || typeof FitAddon === "undefined") {
      setText(box, "the terminal needs the browser libraries: run `npm install` in ui/");
      return;
    }
    box.replaceChildren();
    term = new Terminal({convertEol: false, fontSize: 13, cursorBlink: true});
    fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(box);
    fit.fit();
    window.hiveTerminal = term;
    const proto = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${proto}://${location.host}/api/agents/${NAME}/terminal?csrf=${encodeURIComponent(Hive.csrf)}`);
    socket.binaryType = "arraybuffer";
    const send = (obj) => { if (socket && socket.readyState === 1) socket.send(JSON.stringify(obj)); };
    socket.onopen = () => { send({t: "r", c: term.cols, r: term.rows}); term.focus(); };
    socket.onmessage = (ev) => term.write(typeof ev.data === "string" ? ev.data : new Uint8Array(ev.data));
    socket.onclose = () => { term && term.write("\r\n[terminal closed]\r\n"); socket = null; toggleTerminalButtons(); };
    term.onData((d) => send({t: "i", d}));
    term.onResize(({cols, rows}) => send({t: "r", c: cols, r: rows}));
    toggleTerminalButtons();
  }
  function toggleTerminalButtons() {
    document.getElementById("terminal-open").hidden = !!socket;
    document.getElementById("terminal-close").hidden = !socket;
  }
  function setupTerminal() {
    document.getElementById("terminal-open").addEventListener("click", openTerminal);
    document.getElementById("terminal-close").addEventListener("click", () => { if (socket) socket.close(); });
    window.addEventListener("resize", () => { if (fit) fit.fit(); });
  }

  // --- live -----------------------------------------------------------------------------------
  function snapshot(snap) {
    const mine = (snap.items.agent || []).find((r) => r.name === NAME);
    if (mine) { row = mine; renderHead(); }
    // After a reconnect, whatever happened meanwhile comes from the database.
    loadInbox();
    loadTurns();
  }

  function update(u) {
    const d = u.data;
    if (!d) return;
    switch (u.kind) {
      case "agent":
        if (d.name !== NAME) return;
        // Rows are published once the writes behind them committed: a changed inbox or
        // turn means the delivery states in the database changed too.
        if (row && (row.inbox_depth !== d.inbox_depth || row.turn_id !== d.turn_id)) loadInboxSoon();
        row = d;
        renderHead();
        break;
      case "event":
        if (d.agent === NAME) loadEventsSoon();
        break;
      case "message":
      case "operator_message":
        if (d.to === NAME || d.from === NAME) upsertMessage(d);
        break;
      case "turn_started":
        if (d.agent === NAME) upsertTurn({id: d.turn_id, started_at: Date.now() / 1000, model: row && row.active_model, message_ids: d.message_ids, kick_note: d.kick_note});
        break;
      case "turn_event":
        if (d.agent === NAME) {
          const entry = turns.get(d.turn_id) || upsertTurn({id: d.turn_id, started_at: Date.now() / 1000});
          addEvent(entry, {seq: d.seq, kind: d.kind, data: d.data});
        }
        break;
      case "turn_ended":
        if (d.agent === NAME) {
          const lt = d.last_turn || {};
          upsertTurn({id: d.turn_id, started_at: lt.started_at, ended_at: lt.ended_at, exit_class: lt.exit_class});
          loadInboxSoon();
          loadStatsSoon();
        }
        break;
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    try { features = (await api("GET", "/api/session")).features || {}; } catch (e) { /* */ }
    if (!features.set_model) {
      const picker = document.getElementById("model-picker");
      picker.disabled = true;
      picker.title = "setting the model needs the control plane's `model` admin verb";
    }
    setupActions();
    setupJump();
    setupInboxFold();
    setupModels();
    document.getElementById("older-turns").addEventListener("click", loadOlderTurns);
    setInterval(tickRunning, 1000);
    document.getElementById("events-panel").addEventListener("toggle", loadEvents);
    setupSend();
    setupLog();
    setupTerminal();
    Hive.stream(["agent", "message", "operator_message", "turn_started", "turn_event",
                 "turn_ended", "event", "approval", "question"], {snapshot, update});
    loadLog();
    loadStats();
    document.getElementById("stats-window").addEventListener("change", loadStats);
    setInterval(renderHead, 10000);
  });
})();
