// The overview: every agent in a topology tree, approvals, questions, drafts — live.
"use strict";

(() => {
  const {api, el, setText, setClass, setAttr, armed, badge, lastTurnText} = Hive;
  const rows = new Map();      // name -> {tr, cells, data}
  const approvals = new Map(); // key -> {card, data}
  const questions = new Map();
  const mine = new Set();  // questions this page answered (not "answered elsewhere")
  const drafts = new Map();
  let features = {};
  let ownHive = "";        // this hive's name in the federation; "" without [federation]

  // --- agents ---------------------------------------------------------------------------------
  // Why an agent is not working, and what the operator can do about it: the last turn's
  // detail ("Invalid API key", "429 rate limit", the crash line) and one action.
  function why(d) {
    const detail = d.last_turn && d.last_turn.detail ? d.last_turn.detail : "";
    const waiting = d.retry_at && d.turn_state === "idle" && d.retry_at > Date.now() / 1000;
    if (d.failed) return {text: d.failed_reason || detail, stuck: true, op: "reset", label: "reset"};
    if (d.needs_login) {
      return {text: detail || "the model API refused its credentials", stuck: true,
              hint: `run: hivectl login ${d.name}`, op: "reset", label: "reset after login"};
    }
    if (d.over_budget) {
      return {text: d.budget_reason || "its daily budget is spent", stuck: true, op: "reset",
              label: "let it spend today"};
    }
    if (waiting) return {text: detail || "backing off", stuck: true, op: "restart", label: "retry now"};
    if (d.stopped) return {text: "stopped", op: "start", label: "start"};
    if (d.turn_state === "queued") return {text: d.queue_reason || "waiting for a turn slot", stuck: false};
    return {text: d.status_text || "", stuck: false};
  }

  // A remote agent's row (key "bob@beta") has no page here (its store is on its hive):
  // its name is plain text, and only the actions its hive runs for us are offered.
  function makeRow(name, remote) {
    const cells = {
      name: remote ? el("span", {class: "remote-name", text: name})
                   : el("a", {href: `/agents/${name}`, class: "agent-link", text: name}),
      hive: el("span", {class: "chip hive"}),
      badge: el("span", {class: "badge"}),
      model: el("span", {class: "chip model"}),
      turn: el("span", {class: "chip turn"}),
      status: el("span", {class: "status"}),
      hint: el("code", {class: "hint action-hint"}),
      inbox: el("span", {class: "inbox-depth"}),
      cost: el("span", {class: "cost"}),
      fix: el("button", {class: "primary fix", hidden: true}),
      pause: el("button", {"data-op": "pause", text: "pause"}),
      result: el("span", {class: "outcome", role: "status"}),
    };
    const act = (op, confirm) => {
      const button = el("button", {"data-op": op, class: confirm ? "danger" : "", text: op});
      button.addEventListener("click", () => {
        const run = () => control(name, op, button);
        if (confirm) armed(button, run); else run();
      });
      return button;
    };
    cells.pause.addEventListener("click", () => {
      const row = rows.get(name);
      control(name, row && row.data.paused ? "resume" : "pause", cells.pause);
    });
    cells.fix.addEventListener("click", () => control(name, cells.fix.dataset.op, cells.fix));
    cells.nameCell = el("td", {class: "name"}, cells.name);
    const tr = el("tr", {dataset: {agent: name}, class: remote ? "remote" : ""},
      cells.nameCell, el("td", {class: "hive-col"}, cells.hive),
      el("td", {}, cells.badge), el("td", {}, cells.model),
      el("td", {}, cells.turn), el("td", {class: "why"}, cells.status, " ", cells.hint),
      el("td", {class: "num"}, cells.inbox), el("td", {class: "num"}, cells.cost),
      el("td", {class: "actions"}, cells.fix, remote ? "" : act("cancel", true), cells.pause,
         act("kick", false), act("restart", true), cells.result));
    return {tr, cells, data: null, remote};
  }

  async function control(name, op, button) {
    const entry = rows.get(name);
    const before = entry ? entry.data : null;
    button.disabled = true;
    try {
      const result = await api("POST", `/api/agents/${encodeURIComponent(name)}/${op}`, {});
      if (entry) flash(entry.cells.result, Hive.outcome(op, result, before));
      if (entry && entry.remote) loadFleetSoon(300);  // its hive's next row shows the change
    } catch (e) {
      if (entry) flash(entry.cells.result, `${op}: ${e.message}`, true);
    } finally {
      button.disabled = false;
    }
  }

  // An action's outcome, next to the buttons, for a few seconds.
  function flash(node, text, error) {
    setText(node, text);
    setClass(node, error ? "outcome error" : "outcome");
    setAttr(node, "title", text);
    clearTimeout(node._timer);
    node._timer = setTimeout(() => setText(node, ""), 6000);
  }

  function renderRow(entry) {
    const d = entry.data, c = entry.cells;
    const b = badge(d);
    setText(c.badge, b.text);
    setClass(c.badge, `badge state-${b.state}`);
    setText(c.model, d.active_model || "");
    setText(c.turn, lastTurnText(d.last_turn));
    setClass(c.turn, `chip turn exit-${d.last_turn ? d.last_turn.exit_class : "none"}`);
    setText(c.hive, d.hive || "");
    setClass(c.hive, d.hive && d.hive === ownHive ? "chip hive local" : "chip hive");
    const w = entry.remote ? {...why(d), op: "", hint: ""} : why(d);
    setText(c.status, w.text);
    setClass(c.status, w.stuck ? "status stuck" : "status");
    setAttr(c.status, "title", w.stuck ? w.text : d.status_set_at ? `set ${Hive.ago(d.status_set_at)}` : w.text);
    setText(c.hint, w.hint || "");
    c.hint.hidden = !w.hint;
    c.fix.hidden = !w.op;
    if (w.op) { setText(c.fix, w.label); c.fix.dataset.op = w.op; }
    setText(c.inbox, d.inbox_depth);
    renderCost(entry);
    setText(c.pause, d.paused ? "resume" : "pause");
    setAttr(c.pause, "data-op", d.paused ? "resume" : "pause");
    entry.state = b.state;
  }

  // Cost today comes with each row; 7 days from /api/cost, re-read after turns end.
  const week = new Map();  // name -> dollars over 7 days
  function money(x) { return x >= 100 ? `$${x.toFixed(0)}` : x >= 1 ? `$${x.toFixed(2)}` : `$${x.toFixed(3)}`; }
  function renderCost(entry) {
    const today = entry.data.cost_today_usd || 0;
    const seven = Math.max(week.get(entry.data.name) || 0, today);
    setText(entry.cells.cost, today || seven ? `${money(today)} / ${money(seven)}` : "–");
    setAttr(entry.cells.cost, "title", `today (UTC) ${money(today)}, last 7 days ${money(seven)}`);
  }
  let costTimer = null;
  async function loadCost() {
    costTimer = null;
    try {
      const r = await api("GET", "/api/cost");
      week.clear();
      for (const s of r.agents_7d) week.set(s.key, s.cost_usd);
      for (const entry of rows.values()) renderCost(entry);
    } catch (e) { /* the next turn's end tries again */ }
  }
  function loadCostSoon() { if (!costTimer) costTimer = setTimeout(loadCost, 3000); }

  // --- order, filter, counts ------------------------------------------------------------------
  const STATE_ORDER = ["failed", "needs-login", "over-budget", "retrying", "needs-update", "waiting", "queued", "thinking",
                       "running", "paused", "stopped", "idle"];
  let stateFilter = "";

  // Depth-first by parent, siblings by name; an agent whose parent is unknown is a root.
  function treeOrder() {
    const children = new Map();
    for (const [name, entry] of rows) {
      const parent = entry.data.parent && rows.has(entry.data.parent) ? entry.data.parent : "";
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(name);
    }
    const out = [];
    const seen = new Set();
    const walk = (parent, depth) => {
      for (const name of (children.get(parent) || []).sort(byHive)) {
        if (seen.has(name)) continue;
        seen.add(name);
        out.push([name, depth]);
        walk(name, depth + 1);
      }
    };
    walk("", 0);
    for (const name of rows.keys()) if (!seen.has(name)) out.push([name, 0]); // cycles
    return out;
  }

  // This hive's agents first, then each other hive's by hive name; by name within a hive.
  function byHive(a, b) {
    const ra = rows.get(a), rb = rows.get(b);
    return (ra.remote - rb.remote) || (ra.data.hive || "").localeCompare(rb.data.hive || "") ||
      a.localeCompare(b);
  }

  function sortedOrder(key) {
    const names = Array.from(rows.keys()).sort(byHive);
    const data = (n) => rows.get(n).data;
    const rank = (n) => { const i = STATE_ORDER.indexOf(rows.get(n).state); return i < 0 ? 99 : i; };
    const ended = (n) => (data(n).last_turn ? data(n).last_turn.ended_at : 0);
    if (key === "state") names.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
    if (key === "last_turn") names.sort((a, b) => ended(b) - ended(a) || a.localeCompare(b));
    const spent = (n) => Math.max(week.get(n) || 0, data(n).cost_today_usd || 0);
    if (key === "cost") names.sort((a, b) => spent(b) - spent(a) || a.localeCompare(b));
    return names.map((n) => [n, 0]);
  }

  function currentOrder() {
    const key = document.getElementById("fleet-sort").value;
    return key === "tree" ? treeOrder() : sortedOrder(key);
  }

  function placeRows() {
    const body = document.getElementById("agent-rows");
    const order = currentOrder();
    const current = Array.from(body.children).map((tr) => tr.dataset.agent);
    order.forEach(([name, depth]) => {
      const entry = rows.get(name);
      entry.cells.nameCell.style.paddingLeft = `${0.4 + depth * 1.1}em`;
      setClass(entry.cells.nameCell, depth ? "name child" : "name");
    });
    // Move rows only when the order really changed: moving a node drops focus inside it.
    if (current.join() !== order.map(([n]) => n).join()) {
      for (const [name] of order) body.append(rows.get(name).tr);
    }
    setText(document.getElementById("agents-count"), rows.size);
    agentNames();
    applyFilter();
  }

  function matches(entry, text) {
    if (stateFilter && entry.state !== stateFilter) return false;
    const hive = document.getElementById("fleet-hive").value;
    if (hive && entry.data.hive !== hive) return false;
    if (!text) return true;
    const d = entry.data;
    return [d.name, d.parent, d.hive, d.active_model, d.status_text, d.failed_reason]
      .some((v) => (v || "").toLowerCase().includes(text));
  }

  function applyFilter() {
    const text = document.getElementById("fleet-filter").value.trim().toLowerCase();
    let shown = 0;
    for (const entry of rows.values()) {
      const visible = matches(entry, text);
      if (entry.tr.hidden === visible) entry.tr.hidden = !visible;
      if (visible) shown++;
    }
    document.getElementById("fleet-none").hidden = shown > 0 || rows.size === 0;
    renderStateCounts();
  }

  const stateButtons = new Map();
  function renderStateCounts() {
    const counts = new Map();
    for (const entry of rows.values()) counts.set(entry.state, (counts.get(entry.state) || 0) + 1);
    const box = document.getElementById("state-counts");
    for (const state of STATE_ORDER) {
      let button = stateButtons.get(state);
      if (!button) {
        button = el("button", {type: "button", class: `state-count state-${state}`,
                               dataset: {state}, "aria-pressed": "false",
                               onclick: () => {
                                 stateFilter = stateFilter === state ? "" : state;
                                 applyFilter();
                               }});
        stateButtons.set(state, button);
        box.append(button);
      }
      const n = counts.get(state) || 0;
      button.hidden = n === 0 && stateFilter !== state;
      setText(button, `${state.replace("-", " ")} ${n}`);
      setAttr(button, "aria-pressed", stateFilter === state ? "true" : "false");
    }
  }

  function upsertAgent(data, remote) {
    if (!remote && ownHive) data = {...data, hive: ownHive};
    let entry = rows.get(data.name);
    const isNew = !entry;
    if (isNew) {
      entry = makeRow(data.name, remote);
      rows.set(data.name, entry);
    }
    const before = entry.data;
    entry.data = data;
    const oldState = entry.state;
    renderRow(entry);
    const sortKey = document.getElementById("fleet-sort").value;
    const moved = isNew || before.parent !== data.parent ||
      (sortKey === "state" && oldState !== entry.state) ||
      (sortKey === "last_turn" && lastTurnText(before.last_turn) !== lastTurnText(data.last_turn));
    if (moved) placeRows();
    if (before && (before.cost_today_usd || 0) !== (data.cost_today_usd || 0)) loadCostSoon();
    else if (oldState !== entry.state) applyFilter();
  }

  function removeAgent(name) {
    const entry = rows.get(name);
    if (!entry) return;
    entry.tr.remove();
    rows.delete(name);
    placeRows();
  }

  // Countdowns count down: rows backing off are re-rendered every second.
  function tickRows() {
    const now = Date.now() / 1000;
    for (const entry of rows.values()) {
      if (entry.data.retry_at && entry.data.retry_at > now - 2) {
        const before = entry.state;
        renderRow(entry);
        if (before !== entry.state) applyFilter();
      }
    }
  }

  // --- approvals, questions, drafts ---------------------------------------------------------
  function approvalCard(key, d) {
    const status = el("span", {class: "chip status"});
    const approve = el("button", {class: "primary", text: "approve"});
    const deny = el("button", {class: "danger", text: "deny"});
    const reason = el("input", {type: "text", class: "reason", placeholder: "why deny? (told to the agent)",
                                "aria-label": "reason for denying", maxlength: "4000"});
    const result = el("span", {class: "hint", role: "status"});
    const diff = el("pre", {class: "diff", tabindex: "0", "aria-label": "the config as hive parsed it"});
    const decide = (decision, button) => armed(button, async () => {
      approve.disabled = deny.disabled = true;
      const body = decision === "deny" && reason.value.trim() ? {reason: reason.value.trim()} : {};
      try {
        await api("POST", `/api/approvals/${encodeURIComponent(d.id ?? key)}/${decision}`, body);
        setText(result, decision === "approve" ? "approved" : `denied${body.reason ? ": " + body.reason : ""}`);
        loadHistorySoon();
      } catch (e) {
        setText(result, e.message);
        approve.disabled = deny.disabled = false;
      }
    });
    approve.addEventListener("click", () => decide("approve", approve));
    deny.addEventListener("click", () => decide("deny", deny));
    const card = el("article", {class: "card approval", dataset: {key}},
      el("header", {}, el("strong", {class: "kind"}), " ", el("span", {class: "agent"}), " ",
         status, " ", el("span", {class: "when hint"})),
      el("p", {class: "description"}), diff,
      el("div", {class: "actions"}, approve, reason, deny, result));
    return {card, status, diff, approve, deny, reason};
  }

  function renderApproval(entry, key, d) {
    const c = entry.card;
    setText(c.querySelector(".kind"), d.kind || "approval");
    setText(c.querySelector(".agent"), [d.agent && `for ${d.agent}`,
                                        d.requested_by && `requested by ${d.requested_by}`]
      .filter(Boolean).join(" · "));
    setText(c.querySelector(".description"), d.description || "");
    setText(c.querySelector(".when"), d.requested_at ? Hive.ago(d.requested_at) : "");
    setText(entry.status, d.status || "pending");
    const details = d.details || {};
    const diff = details.diff || details.agent_toml || "";
    if (entry.diffText !== diff) {  // colour added and removed lines; rebuilt only on change
      entry.diffText = diff;
      entry.diff.replaceChildren(...diff.split("\n").map((line) => el("span", {
        class: line.startsWith("+") && !line.startsWith("+++") ? "add"
             : line.startsWith("-") && !line.startsWith("---") ? "del" : "",
        text: line + "\n"})));
    }
    entry.diff.hidden = !diff;
    const open = (d.status || "pending") === "pending" && features.approvals !== false;
    entry.approve.hidden = entry.deny.hidden = entry.reason.hidden = !open;
  }

  function questionCard(key, d) {
    const input = el("input", {type: "text", class: "answer", placeholder: "your answer",
                               "aria-label": "answer"});
    const send = el("button", {class: "primary", text: "answer"});
    const cancel = el("button", {class: "danger", text: "cancel"});
    const result = el("span", {class: "hint", role: "status"});
    const options = el("div", {class: "options"});
    // Another hive's question (key "12@beta") is answered by that hive, through this one.
    const ref = d.remote ? key : String(d.id ?? key);
    const answer = async (text) => {
      if (!text.trim()) { setText(result, "type an answer first"); return; }
      send.disabled = true;
      setClass(result, "hint");
      try {
        mine.add(ref);
        await api("POST", `/api/questions/${encodeURIComponent(ref)}/answer`, {answer: text});
        setText(result, "answered");
        loadHistorySoon();
      } catch (e) {  // the typed text stays in the input, to send again or elsewhere
        mine.delete(ref);
        setText(result, `${e.message}${e.code ? ` (${e.code})` : ""}`);
        setClass(result, "hint outcome error");
        send.disabled = false;
      }
    };
    send.addEventListener("click", () => answer(input.value));
    input.addEventListener("keydown", (ev) => { if (ev.key === "Enter") answer(input.value); });
    cancel.addEventListener("click", () => armed(cancel, async () => {
      try {
        await api("POST", `/api/questions/${encodeURIComponent(d.id ?? key)}/cancel`, {});
        setText(result, "cancelled");
      } catch (e) { setText(result, e.message); }
    }));
    const card = el("article", {class: "card question", dataset: {key}},
      el("header", {}, el("strong", {class: "agent"}), " ",
         el("span", {class: "chip hive", text: d.hive || "", hidden: !d.remote,
                     title: "the hive this agent is on"}), " asks ",
         el("span", {class: "chip ttl", title: "time left"})),
      el("p", {class: "text"}), options,
      el("div", {class: "actions"}, input, send, cancel, result));
    return {card, input, options, send, cancel, answer, result, optionsKey: ""};
  }

  function renderQuestion(entry, key, d) {
    const c = entry.card;
    setText(c.querySelector(".agent"), d.agent || "an agent");
    setText(c.querySelector(".text"), d.question || d.text || "");
    // Another hive's clock may differ: its time left counts from when it was listed.
    entry.expires = d.remote && typeof d.ttl_remaining === "number"
      ? Date.now() / 1000 + d.ttl_remaining : d.expires_at || null;
    const opts = d.options || [];
    const optionsKey = JSON.stringify(opts);
    if (optionsKey !== entry.optionsKey) {  // rebuild only when the options changed
      entry.optionsKey = optionsKey;
      entry.options.replaceChildren(...opts.map((o) =>
        el("button", {class: "option", text: String(o), onclick: () => entry.answer(String(o))})));
    }
    const open = (d.status || "pending") === "pending";
    entry.send.disabled = !open;
    entry.cancel.hidden = !open || Boolean(d.remote);  // cancel is not a remote verb
    if (!open) setText(c.querySelector(".ttl"), d.status);
    if (!open && !mine.has(key) && entry.input.value.trim()) {
      // Resolved elsewhere (hivectl, another tab, expiry) while the operator was typing:
      // say so, and keep the card and the typed text until dismissed.
      const res = d.resolution || {};
      const how = d.remote ? `no longer waiting on ${d.hive} (answered, cancelled or expired there)`
        : d.status === "answered" ? `answered elsewhere${res.by ? " by " + res.by : ""}: ${res.answer || ""}`
        : `${d.status} elsewhere`;
      setText(entry.result, `${how} — your text is kept`);
      entry.keep = true;
      if (!entry.dismiss) {
        entry.dismiss = el("button", {class: "small", text: "dismiss", onclick: () => {
          entry.card.remove(); questions.delete(key); renderPending(); }});
        entry.card.querySelector(".actions").append(entry.dismiss);
      }
    }
  }

  function tickTtl() {
    for (const entry of questions.values()) {
      if (!entry.expires) continue;
      const left = Math.max(0, Math.round(entry.expires - Date.now() / 1000));
      const text = left > 0 ? `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} left`
                            : "expired";
      setText(entry.card.querySelector(".ttl"), text);
    }
  }

  function upsertItem(map, containerId, key, data, make, render) {
    const container = document.getElementById(containerId);
    let entry = map.get(key);
    if (data === null || data === undefined) {
      if (entry && !entry.keep) { entry.card.remove(); map.delete(key); }
      if (map !== drafts) loadHistorySoon();
    } else {
      if (!entry) {
        entry = make(key, data);
        map.set(key, entry);
        container.append(entry.card);
      }
      entry.data = data;
      render(entry, key, data);
    }
    const open = Array.from(map.values()).filter((e) => (e.data.status || "pending") === "pending");
    const count = document.getElementById(containerId + "-count");
    if (count) setText(count, open.length);
    const empty = document.getElementById(containerId + "-empty");
    if (empty) empty.hidden = map.size > 0;
    renderPending();
  }

  // Approvals and questions: a count in the fleet bar and a side panel beside the table,
  // never above it. The panel shows itself when something waits, unless the operator
  // closed it; the button opens and closes it.
  let panelChoice = "";  // "": open when something waits; "open" / "closed": the operator's
  function openCount(map) {
    return Array.from(map.values()).filter((e) => (e.data.status || "pending") === "pending").length;
  }
  function renderPending() {
    const a = openCount(approvals), q = openCount(questions);
    const parts = [];
    if (a) parts.push(`${a} ${a === 1 ? "approval" : "approvals"}`);
    if (q) parts.push(`${q} ${q === 1 ? "question" : "questions"}`);
    if (drafts.size) parts.push(`${drafts.size} ${drafts.size === 1 ? "draft" : "drafts"}`);
    setText(document.getElementById("pending-summary"), parts.join(" · ") || "nothing waiting · history");
    const any = approvals.size + questions.size + drafts.size + scheduledCount > 0;
    const panel = document.getElementById("pending-panel");
    const show = panelChoice ? panelChoice === "open" : any;
    panel.hidden = !show;
    setClass(document.getElementById("fleet-body"), show ? "fleet-body with-pending" : "fleet-body");
    const toggle = document.getElementById("pending-toggle");
    setAttr(toggle, "aria-expanded", show ? "true" : "false");
    setClass(toggle, a + q ? "pending-toggle waiting" : "pending-toggle");
  }

  function draftCard(key, d) {
    const card = el("article", {class: "card draft", dataset: {key}},
      el("strong", {class: "name"}), " ", el("span", {class: "hint detail"}));
    return {card};
  }
  function renderDraft(entry, key, d) {
    setText(entry.card.querySelector(".name"), d.name || key);
    setText(entry.card.querySelector(".detail"),
            [d.requested_by && `by ${d.requested_by}`,
             d.base_sha ? `base ${d.base_sha.slice(0, 10)}` : "preparing",
             d.config_dir].filter(Boolean).join(" · "));
    document.getElementById("drafts-panel").hidden = drafts.size === 0;
  }

  const KEYED = {
    approval: (key, d) => upsertItem(approvals, "approvals", key, d, approvalCard, renderApproval),
    question: (key, d) => upsertItem(questions, "questions", key, d, questionCard, renderQuestion),
    draft: (key, d) => upsertItem(drafts, "drafts", key, d, draftCard, renderDraft),
  };

  // --- the federation: other hives' agents, and every link's health ---------------------------
  // /api/fleet is the fleet view the link reads from the JetStream bucket (each hive puts
  // its row there every second), so it is polled; this hive's own rows come live, above.
  let fleetTimer = null;
  async function loadFleet() {
    clearTimeout(fleetTimer);
    fleetTimer = null;
    let fleet;
    try { fleet = await api("GET", "/api/fleet"); } catch (e) { loadFleetSoon(5000); return; }
    if (!fleet.hive) return;  // no [federation]: nothing to show, nothing to poll
    if (!ownHive) federate(fleet.hive);
    const seen = new Set();
    for (const h of fleet.hives) {
      if (h.hive === ownHive) continue;
      for (const row of h.agents) {
        const key = `${row.name}@${h.hive}`;
        seen.add(key);
        upsertAgent({...row, name: key, agent: row.name, hive: h.hive,
                     parent: row.parent ? `${row.parent}@${h.hive}` : ""}, true);
      }
    }
    for (const [key, entry] of Array.from(rows)) if (entry.remote && !seen.has(key)) removeAgent(key);
    renderLinks(fleet.hives);
    hiveChoices(fleet.hives.map((h) => h.hive));
    loadRemoteQuestions(fleet.hives);
    loadFleetSoon(2000);
  }
  function loadFleetSoon(ms) {
    if (ownHive && !fleetTimer) fleetTimer = setTimeout(loadFleet, ms);
    else if (ownHive && ms < 1000) { clearTimeout(fleetTimer); fleetTimer = setTimeout(loadFleet, ms); }
  }

  // The other hives' questions: each hive's fleet row counts its pending ones, and only
  // while some hive counts any (or this page still shows one) is the list asked for; the
  // dashboard's server asks each such hive, which decides whether this hive may see them.
  let remoteLoading = false;
  async function loadRemoteQuestions(hives) {
    const counted = hives.some((h) => h.hive !== ownHive && h.questions > 0);
    const shown = Array.from(questions.values()).some((e) => e.data.remote);
    if (remoteLoading || (!counted && !shown)) return;
    remoteLoading = true;
    let reply;
    try { reply = await api("GET", "/api/fleet/questions"); } catch (e) { return; }
    finally { remoteLoading = false; }
    const failed = new Set(reply.errors.map((e) => e.hive));  // keep its cards: unknown
    const fresh = new Map(reply.questions.map((q) => [q.key, {...q, remote: true}]));
    for (const [key, entry] of Array.from(questions)) {
      if (entry.data.remote && !fresh.has(key) && !failed.has(entry.data.hive)) remoteGone(key, entry);
    }
    for (const [key, q] of fresh) KEYED.question(key, q);
    const notes = [
      ...reply.errors.map((e) => `${e.hive}: ${e.message} (${e.code})`),
      ...Object.entries(reply.left_off).map(([h, n]) =>
        `${h}: ${n} more ${n === 1 ? "question" : "questions"} (answer on ${h}, or hivectl answer --hive ${h})`)];
    const note = document.getElementById("questions-remote");
    setText(note, notes.join(" · "));
    note.hidden = !notes.length;
  }
  // A remote question no longer listed: gone, unless the operator was typing an answer
  // (then the card and the text stay, as for a local question resolved elsewhere).
  function remoteGone(key, entry) {
    if (mine.has(key) || !entry.input.value.trim()) KEYED.question(key, null);
    else if (entry.data.status !== "gone") KEYED.question(key, {...entry.data, status: "gone"});
  }

  // This hive is federated: show the hive column, its filter and sort, and stamp local rows.
  function federate(name) {
    ownHive = name;
    setClass(document.getElementById("agents"), "agents compact federated");
    for (const node of document.querySelectorAll(".fed-only")) node.hidden = false;
    document.getElementById("links-panel").hidden = false;
    setText(document.getElementById("links-own"), `this hive: ${name}`);
    for (const entry of rows.values()) {
      if (!entry.remote) { entry.data = {...entry.data, hive: name}; renderRow(entry); }
    }
  }

  function hiveChoices(hives) {
    const select = document.getElementById("fleet-hive");
    const have = Array.from(select.options).map((o) => o.value).slice(1);
    if (have.join() === hives.join()) return;
    const chosen = select.value;
    select.replaceChildren(el("option", {value: "", text: "every hive"}),
      ...hives.map((h) => el("option", {value: h, text: h === ownHive ? `${h} (this hive)` : h})));
    select.value = hives.includes(chosen) ? chosen : "";
  }

  function renderLinks(hives) {
    const ms = (s) => (s === null || s === undefined ? "–" : `${(s * 1000).toFixed(1)} ms`);
    const outbox = (o) => {
      const parts = Object.entries(o).filter(([, n]) => n > 0).map(([to, n]) => `${n} → ${to}`);
      return parts.length ? parts.join(", ") : "0";
    };
    document.getElementById("link-rows").replaceChildren(...hives.map((h) => {
      const stale = h.age > 10;  // a hive that stopped putting its row: its figures are old
      // A row this hive could not read whole: what is wrong with it, in place of "connected".
      const said = h.error ? `bad row: ${h.error.message}` : stale ? "no news" : h.connected ? "yes" : "no";
      return el("tr", {dataset: {hive: h.hive}},
        el("th", {scope: "row", text: h.hive === ownHive ? `${h.hive} (this hive)` : h.hive}),
        el("td", {class: h.connected && !stale && !h.error ? "connected" : "down", text: said}),
        el("td", {class: "rtt", text: ms(h.rtt)}),
        el("td", {class: "outbox", text: outbox(h.outbox)}),
        el("td", {class: "lag", text: String(h.lag)}),
        el("td", {class: "age hint", text: `${Math.round(h.age)} s ago`}));
    }));
  }

  // --- history, scheduled prompts, spawn ------------------------------------------------------
  function historyLine(a) {
    const res = a.resolution || {};
    const what = res.answer !== undefined ? `: “${res.answer}”` : res.reason ? `: ${res.reason}` : "";
    const when = a.resolved_at ? new Date(a.resolved_at * 1000).toLocaleString() : "";
    return el("li", {dataset: {id: String(a.id), status: a.status}},
      el("strong", {text: `#${a.id} ${a.kind}`}), ` ${a.agent ? "for " + a.agent : ""} — `,
      el("span", {class: `chip status-${a.status}`, text: a.status}),
      ` by ${res.by || "?"}, ${when}${what}`,
      a.description ? el("div", {class: "hint", text: a.description}) : null);
  }
  let historyTimer = null;
  async function loadHistory() {
    historyTimer = null;
    const panel = document.getElementById("history-panel");
    if (!panel.open) return;
    try {
      const {approvals: rows} = await api("GET", "/api/approvals/history?limit=50");
      const done = rows.filter((a) => a.status !== "pending");
      document.getElementById("history").replaceChildren(
        ...(done.length ? done.map(historyLine) : [el("li", {class: "empty", text: "nothing decided yet"})]));
    } catch (e) { setText(document.getElementById("history"), e.message); }
  }
  function loadHistorySoon() { if (!historyTimer) historyTimer = setTimeout(loadHistory, 300); }

  let scheduledCount = 0;
  async function loadScheduled() {
    let list = [];
    try { list = (await api("GET", "/api/scheduled")).scheduled; } catch (e) { return; }
    scheduledCount = list.length;
    setText(document.getElementById("scheduled-count"), list.length);
    document.getElementById("scheduled-panel").hidden = list.length === 0;
    document.getElementById("scheduled").replaceChildren(...list.map((p) => {
      const result = el("span", {class: "hint", role: "status"});
      const cancel = el("button", {class: "danger small", text: "cancel"});
      cancel.addEventListener("click", () => armed(cancel, async () => {
        try {
          await api("POST", `/api/scheduled/${p.id}/cancel`, {});
          setText(result, "cancelled");
          loadScheduled();
        } catch (e) { setText(result, e.message); }
      }));
      return el("li", {dataset: {id: String(p.id)}},
        el("strong", {text: `to ${p.agent}`}), ` at ${new Date(p.at * 1000).toLocaleString()}: `,
        el("span", {text: p.text}), " ", cancel, " ", result);
    }));
    renderPending();
  }

  async function spawnAgent(ev) {
    ev.preventDefault();
    const form = ev.target;
    const body = Object.fromEntries(new FormData(form).entries());
    const result = document.getElementById("spawn-result");
    setText(result, "spawning…");
    try {
      const r = await api("POST", "/api/spawn", body);
      setText(result, `spawned ${r.name || body.name}`);
      form.reset();
    } catch (e) { setText(result, e.message); }
  }

  function agentNames() {
    const all = Array.from(rows.keys()).sort(byHive);
    const local = all.filter((n) => !rows.get(n).remote);  // a parent is a local agent
    for (const [id, names] of [["agent-names", local], ["send-names", all]]) {
      const list = document.getElementById(id);
      if (list.children.length !== names.length) {
        list.replaceChildren(...names.map((n) => el("option", {value: n})));
      }
    }
  }

  // The send box: a local name or bob@beta (the outbox carries it to beta's store).
  async function sendMessage(ev) {
    ev.preventDefault();
    const to = document.getElementById("send-to").value.trim();
    const text = document.getElementById("send-text");
    const result = document.getElementById("send-outcome");
    setText(result, "sending…");
    setClass(result, "hint");
    try {
      const r = await api("POST", `/api/agents/${encodeURIComponent(to)}/messages`, {body: text.value});
      setText(result, `sent to ${to}${r.id !== undefined ? ` (#${r.id})` : ""}`);
      text.value = "";
    } catch (e) {
      setText(result, `not sent: ${e.message}${e.code ? ` (${e.code})` : ""}`);
      setClass(result, "hint outcome error");
    }
  }

  // --- live ----------------------------------------------------------------------------------
  function snapshot(snap) {
    const items = snap.items || {};
    const names = new Set((items.agent || []).map((r) => r.name));
    for (const [name, entry] of Array.from(rows)) {
      if (!entry.remote && !names.has(name)) removeAgent(name);
    }
    for (const row of items.agent || []) upsertAgent(row);
    for (const [kind, map] of [["approval", approvals], ["question", questions],
                               ["draft", drafts]]) {
      const fresh = new Map((items[kind] || []).map((d) => [String(d.id ?? d.name ?? ""), d]));
      for (const [key, entry] of Array.from(map)) {
        if (!fresh.has(key) && !entry.data.remote) KEYED[kind](key, null);  // remote: loadFleet
      }
      for (const [key, d] of fresh) KEYED[kind](key, d);
    }
  }

  function update(u) {
    if (u.kind === "agent") {
      if (u.data) upsertAgent(u.data); else removeAgent(u.key);
    } else if (KEYED[u.kind]) {
      KEYED[u.kind](u.key, u.data);
      if (u.kind === "approval" && u.data === null) setTimeout(loadScheduled, 300);
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    try { features = (await api("GET", "/api/session")).features || {}; } catch (e) { /* */ }
    await loadFleet();  // first: local rows then arrive stamped with this hive's name
    Hive.stream(["agent", "approval", "question", "draft"],
                {snapshot, update});
    setInterval(tickTtl, 1000);
    setInterval(tickRows, 1000);
    setInterval(() => { for (const entry of rows.values()) renderRow(entry); }, 10000);
    document.getElementById("fleet-filter").addEventListener("input", applyFilter);
    document.getElementById("fleet-sort").addEventListener("change", placeRows);
    document.getElementById("pending-toggle").addEventListener("click", () => {
      panelChoice = document.getElementById("pending-panel").hidden ? "open" : "closed";
      renderPending();
    });
    document.getElementById("history-panel").addEventListener("toggle", loadHistory);
    document.getElementById("spawn-form").addEventListener("submit", spawnAgent);
    document.getElementById("overview-send").addEventListener("submit", sendMessage);
    document.getElementById("fleet-hive").addEventListener("change", applyFilter);

    loadScheduled();
    renderPending();
    loadCost();
  });
})();
