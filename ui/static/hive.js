// hive dashboard: what every page shares. Plain JS, no build step.
//
// Hive.api(method, path, body)      JSON API call with the CSRF token
// Hive.stream(kinds, handlers)      live updates over SSE; reconnects, then a fresh snapshot
// Hive.armed(button, action)        destructive actions need a second click
// Hive.notify(key, title, body)     browser notification, at most once per key
// Hive.badge(row)                   an agent row's state badge
"use strict";

const Hive = (() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

  // --- session: a logout or a changed token sends every open tab to the login page, which
  // brings each back to where it was; a login in one tab brings the others back too.
  const session = "BroadcastChannel" in window ? new BroadcastChannel("hive-session") : null;
  let leaving = false;
  function toLogin(tell) {
    if (leaving) return;
    leaving = true;
    if (tell && session) session.postMessage("logout");
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
  }
  if (session) session.onmessage = (ev) => { if (ev.data === "logout") toLogin(false); };
  // A dropped stream may be a changed token (a restarted hive with a new one): ask.
  let probing = false;
  async function checkSession() {
    if (probing) return;
    probing = true;
    try {
      const res = await fetch("/api/session", {credentials: "same-origin"});
      if (res.status === 401) toLogin(true);
    } catch (e) { /* the hive is down: the stream keeps trying */ }
    finally { setTimeout(() => { probing = false; }, 2000); }
  }
  document.addEventListener("DOMContentLoaded", () => {
    const logout = document.querySelector("form.logout");
    if (logout) logout.addEventListener("submit", () => { if (session) session.postMessage("logout"); });
    if (session) session.postMessage("login");  // tabs waiting on the login page come back
  });

  async function api(method, path, body) {
    const init = {method, credentials: "same-origin", headers: {"Accept": "application/json"}};
    if (method !== "GET") {
      init.headers["X-CSRF-Token"] = csrf;
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body || {});
    }
    const res = await fetch(path, init);
    if (res.status === 401) {
      toLogin(true);
      throw new Error("not logged in");
    }
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      const err = new Error((data.error && data.error.message) || res.statusText);
      err.status = res.status;
      err.code = data.error && data.error.code;
      throw err;
    }
    return data;
  }

  // --- live updates ------------------------------------------------------------------------
  function setLive(state, text) {
    const el = document.getElementById("live");
    if (!el) return;
    el.dataset.state = state;
    el.textContent = text;
  }

  // A dropped connection greys the live data and says since when, until a fresh snapshot.
  let offlineSince = null;
  function markOffline() {
    checkSession();
    if (offlineSince === null) offlineSince = new Date();
    document.body.classList.add("stale");
    setLive("down", `offline since ${offlineSince.toLocaleTimeString()} · reconnecting…`);
    const live = document.getElementById("live");
    if (live) live.title = `no live updates since ${offlineSince.toLocaleString()}: what you see may be out of date`;
  }
  function markOnline() {
    offlineSince = null;
    document.body.classList.remove("stale");
    const live = document.getElementById("live");
    if (live) live.title = "live updates";
  }

  function stream(kinds, handlers) {
    kinds = kinds.includes("attention") ? kinds : [...kinds, "attention"];
    let source = null;
    let retry = null;
    let lastSeq = 0;
    function open() {
      clearTimeout(retry);
      if (source) source.close();
      source = new EventSource("/api/stream?kinds=" + encodeURIComponent(kinds.join(",")));
      source.onopen = () => { if (offlineSince === null) setLive("up", "live"); };
      source.onmessage = (ev) => {
        let item;
        try { item = JSON.parse(ev.data); } catch (e) { return; }
        if (item.kind === "snapshot") {
          lastSeq = item.seq;
          markOnline();
          setLive("up", "live");
          refreshStripSoon();  // what changed while we were away
          handlers.snapshot && handlers.snapshot(item);
          return;
        }
        if (item.kind === "gap") {
          // We fell behind (or the hub restarted): start again from a fresh snapshot.
          setLive("down", "catching up…");
          retry = setTimeout(open, 100);
          return;
        }
        if (typeof item.seq === "number" && item.seq <= lastSeq) return;
        lastSeq = item.seq;
        if (item.kind === "attention") { attentionUpdate(item.data); return; }
        try { handlers.update && handlers.update(item); } catch (e) { console.error(e); }
      };
      source.onerror = () => {
        // EventSource reconnects by itself; the new connection begins with a snapshot.
        markOffline();
        if (source.readyState === EventSource.CLOSED) retry = setTimeout(open, 2000);
      };
    }
    open();
    return {close() { clearTimeout(retry); if (source) source.close(); }, reopen: open};
  }

  // --- small DOM helpers -------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  // Only touch the DOM when something changed: keeps selection, focus and scroll intact.
  function setText(node, text) {
    text = text === null || text === undefined ? "" : String(text);
    if (node && node.textContent !== text) node.textContent = text;
  }
  function setClass(node, cls) {
    if (node && node.className !== cls) node.className = cls;
  }
  function setAttr(node, name, value) {
    value = value === null || value === undefined ? "" : String(value);
    if (node && node.getAttribute(name) !== value) node.setAttribute(name, value);
  }

  // A destructive button acts only on a second click within 4 seconds.
  function armed(button, action) {
    if (button.dataset.armed === "1") {
      clearTimeout(Number(button.dataset.timer));
      button.dataset.armed = "";
      button.textContent = button.dataset.label;
      button.classList.remove("armed");
      return action();
    }
    button.dataset.label = button.textContent;
    button.dataset.armed = "1";
    button.textContent = "really " + button.dataset.label + "?";
    button.classList.add("armed");
    button.dataset.timer = String(setTimeout(() => {
      button.dataset.armed = "";
      button.textContent = button.dataset.label;
      button.classList.remove("armed");
    }, 4000));
    return Promise.resolve(null);
  }

  // What a lifecycle action did, in words: its outcome, or that there was nothing to do
  // (judged from the reply and the row as it was when the button was pressed).
  function outcome(op, result, before) {
    const b = before || {};
    switch (op) {
      case "cancel": return result && result.cancelled ? "turn cancelled" : "nothing to cancel: no turn running";
      case "pause": return b.paused ? "already paused" : "paused";
      case "resume": return b.paused === false ? "was not paused" : "resumed";
      case "start": return b.stopped === false ? "already running" : "started";
      case "stop": return b.stopped ? "already stopped" : b.turn_id ? "stops after its turn" : "stopped";
      case "reset":
        return b.failed || b.needs_login || b.retry_at || b.over_budget ? "reset" : "nothing to reset";
      case "restart": return "restarted: a turn starts";
      case "kick": return result && result.queued === false ? "kick joined the running turn" : "kicked: a turn starts";
      default: return `${op}: done`;
    }
  }

  // --- formatting --------------------------------------------------------------------------
  function ago(ts) {
    if (!ts) return "";
    const s = Math.max(0, Date.now() / 1000 - ts);
    if (s < 60) return Math.floor(s) + "s ago";
    if (s < 3600) return Math.floor(s / 60) + "m ago";
    if (s < 86400) return Math.floor(s / 3600) + "h ago";
    return Math.floor(s / 86400) + "d ago";
  }
  function duration(s) {
    if (s === null || s === undefined) return "";
    if (s < 1) return Math.round(s * 1000) + "ms";
    if (s < 120) return s.toFixed(1) + "s";
    return Math.round(s / 60) + "m";
  }
  function lastTurnText(t) {
    if (!t) return "no turn yet";
    return `${ago(t.ended_at)} · ${duration(t.duration)} · ${t.exit_class}`;
  }

  // The state badge: the flags first (they explain why nothing happens), then the turn.
  function badge(row) {
    if (row.failed) return {state: "failed", text: "failed"};
    if (row.needs_login) return {state: "needs-login", text: "needs login"};
    if (row.over_budget) return {state: "over-budget", text: "over budget"};
    if (row.needs_update) return {state: "needs-update", text: "needs update"};
    if (row.paused) return {state: "paused", text: "paused"};
    if (row.stopped) return {state: "stopped", text: "stopped"};
    // Backing off after a crash or a rate limit: idle, but not for lack of work.
    if (row.retry_at && row.turn_state === "idle") {
      return {state: "retrying", text: `retry in ${Math.max(0, Math.round(row.retry_at - Date.now() / 1000))}s`};
    }
    switch (row.turn_state) {
      case "thinking": return {state: "thinking", text: "thinking"};
      case "waiting_recv": return {state: "waiting", text: "waiting"};
      case "waiting_operator": return {state: "waiting", text: "waiting for operator"};
      // Turn admission holds it (max_concurrent_turns, memory_budget_mb): queue_reason says why.
      case "queued": return {state: "queued", text: "queued"};
      case "starting":
      case "tool": return {state: "running", text: "running"};
      default: return {state: "idle", text: "idle"};
    }
  }

  // --- notifications: the attention inbox -------------------------------------------------
  // Every page shows the inbox's open count in the header and its most severe open items in
  // the strip below it (hive.attention keeps them in the store, so every tab, a reload and
  // `hivectl inbox` agree). Browser notifications: new critical/high items only, once each.
  const NOTIFIED = "hive.notified";
  function notifiedSet() {
    try { return JSON.parse(localStorage.getItem(NOTIFIED) || "[]"); } catch (e) { return []; }
  }
  function alreadyNotified(key) {
    const seen = notifiedSet();
    if (seen.includes(key)) return true;
    seen.push(key);
    localStorage.setItem(NOTIFIED, JSON.stringify(seen.slice(-500)));
    return false;
  }
  // With several dashboard tabs open, only one of them (the holder of a Web Lock, passed
  // on when it closes) shows browser notifications; the others only update their strip.
  let notifier = !(navigator.locks && navigator.locks.request);
  if (!notifier) {
    navigator.locks.request("hive-notifier", () => new Promise(() => { notifier = true; }));
  }
  function notify(key, title, body, href) {
    if (!notifier || alreadyNotified(key)) return;
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const n = new Notification(title, {body, tag: key});
    if (href) n.onclick = () => { window.focus(); location.href = href; };
  }
  function setupNotifications() {
    const button = document.getElementById("notify-enable");
    if (!button || !("Notification" in window)) return;
    // Permission is asked once: after the operator answered, never again.
    if (Notification.permission !== "default" || localStorage.getItem("hive.notify.asked")) return;
    button.hidden = false;
    button.addEventListener("click", async () => {
      localStorage.setItem("hive.notify.asked", "1");
      button.hidden = true;
      try { await Notification.requestPermission(); } catch (e) { /* unsupported */ }
    });
  }

  const inboxListeners = [];
  function setCounts(counts) {
    if (!counts) return;
    const count = document.getElementById("attention-count");
    const link = document.getElementById("inbox-link");
    setText(count, counts.open);
    const sev = counts.by_severity || {};
    const level = sev.critical ? "critical" : sev.high ? "high" : counts.open ? "info" : "none";
    if (link) {
      link.dataset.level = level;
      setAttr(link, "aria-label", `inbox: ${counts.open} open, ${sev.critical || 0} critical`);
    }
  }
  function stripItem(item) {
    const when = ago(item.updated_at);
    const title = item.count > 1 ? `${item.title} ×${item.count}` : item.title;
    return el("li", {class: `sev-${item.severity} state-${item.state}`,
                     dataset: {id: String(item.id), kind: item.kind}},
      item.link ? el("a", {href: item.link, text: title}) : el("strong", {text: title}),
      " ", el("span", {class: "body", text: (item.body || "").slice(0, 200)}),
      " ", el("span", {class: "hint", text: when}));
  }
  let stripTimer = null;
  async function loadStrip() {
    stripTimer = null;
    const list = document.getElementById("notification-list");
    try {
      const r = await api("GET", "/api/inbox?state=open&limit=8");
      setCounts(r.counts);
      if (list) list.replaceChildren(...r.items.map(stripItem));
    } catch (e) { /* the next update tries again */ }
  }
  // Floods (200 mails in a second) cost one re-read, not 200.
  function refreshStripSoon() {
    if (!stripTimer) stripTimer = setTimeout(loadStrip, 250);
  }
  function attentionUpdate(data) {
    if (!data) return;
    setCounts(data.counts);
    for (const item of data.items || []) {
      if (item.title && item.state === "new" &&
          (item.severity === "critical" || item.severity === "high")) {
        notify(`inbox:${item.id}`, item.title, item.body || "", item.link || "/inbox");
      }
    }
    refreshStripSoon();
    for (const fn of inboxListeners) fn(data);
  }
  function onInbox(fn) { inboxListeners.push(fn); }

  document.addEventListener("DOMContentLoaded", () => {
    setupNotifications();
    loadStrip();
  });

  return {api, stream, el, setText, setClass, setAttr, armed, ago, duration, lastTurnText,
          badge, notify, onInbox, loadStrip, outcome, csrf};
})();
