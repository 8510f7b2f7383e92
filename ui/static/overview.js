// The overview: every agent in a topology tree, approvals, questions, drafts — live.
"use strict";

(() => {
  const {api, el, setText, setClass, setAttr, armed, badge, lastTurnText} = Hive;
  const rows = new Map();      // name -> {tr, cells, data}
  const approvals = new Map(); // key -> {card, data}
  const questions = new Map();
  const drafts = new Map();
  let features = {};

  // --- agents ---------------------------------------------------------------------------------
  function makeRow(name) {
    const cells = {
      name: el("a", {href: `/agents/${name}`, class: "agent-link", text: name}),
      badge: el("span", {class: "badge"}),
      model: el("span", {class: "chip model"}),
      turn: el("span", {class: "chip turn"}),
      status: el("span", {class: "status"}),
      inbox: el("span", {class: "inbox-depth"}),
      pause: el("button", {"data-op": "pause", text: "pause"}),
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
    cells.nameCell = el("td", {class: "name"}, cells.name);
    const tr = el("tr", {dataset: {agent: name}},
      cells.nameCell, el("td", {}, cells.badge), el("td", {}, cells.model),
      el("td", {}, cells.turn), el("td", {}, cells.status), el("td", {}, cells.inbox),
      el("td", {class: "actions"}, act("cancel", true), cells.pause, act("kick", false),
         act("restart", true)));
    return {tr, cells, data: null};
  }

  async function control(name, op, button) {
    button.disabled = true;
    try {
      await api("POST", `/api/agents/${name}/${op}`, {});
    } catch (e) {
      Hive.notify(`error:${Date.now()}`, `${op} ${name} failed`, e.message);
    } finally {
      button.disabled = false;
    }
  }

  function renderRow(entry) {
    const d = entry.data, c = entry.cells;
    const b = badge(d);
    setText(c.badge, b.text);
    setClass(c.badge, `badge state-${b.state}`);
    setText(c.model, d.active_model || "");
    setText(c.turn, lastTurnText(d.last_turn));
    setClass(c.turn, `chip turn exit-${d.last_turn ? d.last_turn.exit_class : "none"}`);
    setText(c.status, d.failed ? d.failed_reason : d.status_text);
    setAttr(c.status, "title", d.status_set_at ? `set ${Hive.ago(d.status_set_at)}` : "");
    setText(c.inbox, d.inbox_depth);
    setText(c.pause, d.paused ? "resume" : "pause");
    setAttr(c.pause, "data-op", d.paused ? "resume" : "pause");
  }

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
      for (const name of (children.get(parent) || []).sort()) {
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

  function placeRows() {
    const body = document.getElementById("agent-rows");
    const order = treeOrder();
    const current = Array.from(body.children).map((tr) => tr.dataset.agent);
    order.forEach(([name, depth]) => {
      const entry = rows.get(name);
      entry.cells.nameCell.style.paddingLeft = `${0.6 + depth * 1.4}em`;
      setClass(entry.cells.nameCell, depth ? "name child" : "name");
    });
    // Move rows only when the order really changed: moving a node drops focus inside it.
    if (current.join() !== order.map(([n]) => n).join()) {
      for (const [name] of order) body.append(rows.get(name).tr);
    }
    setText(document.getElementById("agents-count"), rows.size);
  }

  function upsertAgent(data) {
    let entry = rows.get(data.name);
    const isNew = !entry;
    if (isNew) {
      entry = makeRow(data.name);
      rows.set(data.name, entry);
    }
    const moved = isNew || entry.data.parent !== data.parent;
    entry.data = data;
    renderRow(entry);
    if (moved) placeRows();
  }

  function removeAgent(name) {
    const entry = rows.get(name);
    if (!entry) return;
    entry.tr.remove();
    rows.delete(name);
    placeRows();
  }

  // --- approvals, questions, drafts ---------------------------------------------------------
  function approvalCard(key, d) {
    const status = el("span", {class: "chip status"});
    const approve = el("button", {class: "primary", text: "approve"});
    const deny = el("button", {class: "danger", text: "deny"});
    const result = el("span", {class: "hint", role: "status"});
    const diff = el("pre", {class: "diff"});
    const decide = (decision, button) => armed(button, async () => {
      approve.disabled = deny.disabled = true;
      try {
        await api("POST", `/api/approvals/${encodeURIComponent(d.id ?? key)}/${decision}`, {});
        setText(result, decision === "approve" ? "approved" : "denied");
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
      el("div", {class: "actions"}, approve, deny, result));
    return {card, status, diff, approve, deny};
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
    entry.approve.hidden = entry.deny.hidden = !open;
  }

  function questionCard(key, d) {
    const input = el("input", {type: "text", class: "answer", placeholder: "your answer",
                               "aria-label": "answer"});
    const send = el("button", {class: "primary", text: "answer"});
    const cancel = el("button", {class: "danger", text: "cancel"});
    const result = el("span", {class: "hint", role: "status"});
    const options = el("div", {class: "options"});
    const answer = async (text) => {
      if (!text.trim()) { setText(result, "type an answer first"); return; }
      send.disabled = true;
      try {
        await api("POST", `/api/questions/${encodeURIComponent(d.id ?? key)}/answer`,
                  {answer: text});
        setText(result, "answered");
      } catch (e) { setText(result, e.message); send.disabled = false; }
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
      el("header", {}, el("strong", {class: "agent"}), " asks ",
         el("span", {class: "chip ttl", title: "time left"})),
      el("p", {class: "text"}), options,
      el("div", {class: "actions"}, input, send, cancel, result));
    return {card, input, options, send, cancel, answer, optionsKey: ""};
  }

  function renderQuestion(entry, key, d) {
    const c = entry.card;
    setText(c.querySelector(".agent"), d.agent || "an agent");
    setText(c.querySelector(".text"), d.question || d.text || "");
    entry.expires = d.expires_at || null;
    const opts = d.options || [];
    const optionsKey = JSON.stringify(opts);
    if (optionsKey !== entry.optionsKey) {  // rebuild only when the options changed
      entry.optionsKey = optionsKey;
      entry.options.replaceChildren(...opts.map((o) =>
        el("button", {class: "option", text: String(o), onclick: () => entry.answer(String(o))})));
    }
    const open = (d.status || "pending") === "pending";
    entry.send.disabled = !open;
    entry.cancel.hidden = !open;
    if (!open) setText(c.querySelector(".ttl"), d.status);
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
      if (entry) { entry.card.remove(); map.delete(key); }
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

  // --- live ----------------------------------------------------------------------------------
  function snapshot(snap) {
    const items = snap.items || {};
    const names = new Set((items.agent || []).map((r) => r.name));
    for (const name of Array.from(rows.keys())) if (!names.has(name)) removeAgent(name);
    for (const row of items.agent || []) upsertAgent(row);
    for (const [kind, map] of [["approval", approvals], ["question", questions],
                               ["draft", drafts]]) {
      const fresh = new Map((items[kind] || []).map((d) => [String(d.id ?? d.name ?? ""), d]));
      for (const key of Array.from(map.keys())) if (!fresh.has(key)) KEYED[kind](key, null);
      for (const [key, d] of fresh) KEYED[kind](key, d);
    }
  }

  function update(u) {
    if (u.kind === "agent") {
      if (u.data) upsertAgent(u.data); else removeAgent(u.key);
    } else if (KEYED[u.kind]) {
      KEYED[u.kind](u.key, u.data);
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    try { features = (await api("GET", "/api/session")).features || {}; } catch (e) { /* */ }
    Hive.stream(["agent", "approval", "question", "draft"],
                {snapshot, update});
    setInterval(tickTtl, 1000);
    setInterval(() => { for (const entry of rows.values()) renderRow(entry); }, 10000);
  });
})();
