// The login page: when another tab logs in, go back to the page this one was asked for.
"use strict";

(() => {
  if (!("BroadcastChannel" in window)) return;
  const channel = new BroadcastChannel("hive-session");
  channel.onmessage = (ev) => {
    if (ev.data !== "login") return;
    // The server checked this path as it checks a login's next (hive.ui.auth.safe_next_path).
    location.href = document.body.dataset.next || "/";
  };
})();
