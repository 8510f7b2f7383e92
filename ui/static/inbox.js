// The attention inbox page: what needs the operator, most severe first, with filters,
// per-item seen / done, and "mark all" over the current filter. The items and their state
// live in the store (hive.attention): a reload, another tab and `hivectl inbox` agree.
"use strict";

(() => {
  const {api, el, setText, ago} = Hive;
  const PAGE = 50;
  let shown = PAGE;
  let loading = null;

  function filters() {
    const v = (id) => document.getElementById(id).value.trim();
    return {state: v("f-state"), severity: v("f-severity"), kind: v("f-kind"), agent: v("f-agent")};
  }

  function query(extra) {
    const params = new URLSearchParams({...filters(), ...extra});
    for (const [k, v] of Array.from(params)) if (!v) params.delete(k);
    return params.toString();
  }

  function result(text) { setText(document.getElementById("inbox-result"), text); }

  async function mark(body, what) {
    try {
      const r = await api("POST", "/api/inbox/mark", body);
      result(r.changed ? `${r.changed} ${r.changed === 1 ? "item" : "items"} ${r.state}`
                       : `nothing to mark: ${what} already ${r.state}`);
      load();
    } catch (e) { result(e.message); }
  }

  function itemNode(item) {
    const title = item.count > 1 ? `${item.title} (×${item.count})` : item.title;
    const buttons = [];
    if (item.state !== "seen" && item.state !== "done") {
      buttons.push(el("button", {class: "small", text: "seen", "aria-label": `mark ${item.title} seen`,
        onclick: () => mark({state: "seen", ids: [item.id]}, "it is")}));
    }
    if (item.state !== "done") {
      buttons.push(el("button", {class: "small", text: "done", "aria-label": `mark ${item.title} done`,
        onclick: () => mark({state: "done", ids: [item.id]}, "it is")}));
    } else {
      buttons.push(el("button", {class: "small", text: "reopen", "aria-label": `reopen ${item.title}`,
        onclick: () => mark({state: "new", ids: [item.id]}, "it is")}));
    }
    const expires = item.expires_at && item.state !== "done"
      ? el("span", {class: "hint", text: ` · expires ${new Date(item.expires_at * 1000).toLocaleTimeString()}`})
      : null;
    return el("li", {class: `item sev-${item.severity} state-${item.state}`,
                     dataset: {id: String(item.id), kind: item.kind, state: item.state}},
      el("span", {class: `sev badge sev-${item.severity}`, text: item.severity}),
      el("div", {class: "what"},
        item.link ? el("a", {href: item.link, text: title}) : el("strong", {text: title}),
        el("p", {class: "body", text: item.body || ""}),
        el("span", {class: "hint", text: `${item.kind} · ${ago(item.updated_at)} · ${item.state}`}),
        expires),
      el("div", {class: "item-actions"}, ...buttons));
  }

  async function load() {
    // One read at a time; a change meanwhile asks for one more after it.
    if (loading) { loading.again = true; return; }
    loading = {again: false};
    try {
      const r = await api("GET", `/api/inbox?${query({limit: shown})}`);
      const list = document.getElementById("inbox-items");
      list.replaceChildren(...r.items.map(itemNode));
      setText(document.getElementById("inbox-total"), r.total);
      document.getElementById("inbox-empty").hidden = r.items.length > 0;
      document.getElementById("inbox-more").hidden = r.items.length >= r.total;
    } catch (e) {
      result(e.message);
    } finally {
      const again = loading.again;
      loading = null;
      if (again) load();
    }
  }

  let soon = null;
  function loadSoon() {
    if (!soon) soon = setTimeout(() => { soon = null; load(); }, 250);
  }

  function markAll(state) {
    const f = filters();
    mark({state, all: true, filter_state: f.state, severity: f.severity, kind: f.kind,
          agent: f.agent}, "every matching item is");
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("inbox-filters");
    form.addEventListener("change", () => { shown = PAGE; load(); });
    form.addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
    document.getElementById("mark-all-done").addEventListener("click", () => markAll("done"));
    document.getElementById("mark-all-seen").addEventListener("click", () => markAll("seen"));
    document.getElementById("inbox-more").addEventListener("click", () => { shown += PAGE; load(); });
    Hive.onInbox(loadSoon);
    Hive.stream([], {snapshot: load, update: () => {}});
  });
})();
