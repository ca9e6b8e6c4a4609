// Keyboard triage: 1-4 decide (rl, pretrain, prompt, dismiss), j/k next/previous, n note, u undo, b bulk.
// Decisions are POSTed with the session's CSRF token; on success the next case of the same queue opens.
(function () {
  "use strict";
  const root = document.getElementById("case");
  if (!root) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const qs = root.dataset.qs;
  const tracks = { "1": "rl", "2": "pretrain", "3": "prompt", "4": "dismiss" };
  const status = document.getElementById("status");
  const note = document.getElementById("note");
  const bulk = document.getElementById("bulk");
  let busy = false;

  function go(id) { if (id) window.location.href = "/case/" + id + (qs ? "?" + qs : ""); }
  function say(text, bad) { status.textContent = text; status.className = "status " + (bad ? "error" : "ok"); }

  async function post(url, form) {
    const body = new URLSearchParams(form);
    const resp = await fetch(url, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Accept": "application/json" },
    });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(data.detail || resp.statusText);
    return data;
  }

  async function decide(track) {
    if (busy) return;
    if (root.dataset.mine !== "1") { say("this case is claimed by someone else", true); return; }
    busy = true;
    say("saving " + track + "…");
    try {
      const form = { track: track, note: note.value };
      if (bulk.checked) form.bulk = "true";
      const data = await post("/case/" + root.dataset.case + "/decide" + (qs ? "?" + qs : ""), form);
      say("decided " + track + " (" + data.decisions.length + ")");
      window.location.href = data.next;
    } catch (e) { say(e.message, true); busy = false; }
  }

  async function undo() {
    if (busy) return;
    busy = true;
    try {
      const data = await post("/undo", {});
      if (!data.undone) { say("nothing to undo", true); busy = false; return; }
      say("undid " + data.undone.track + " on " + data.undone.case_id);
      window.location.href = data.case + (qs ? "?" + qs : "");
    } catch (e) { say(e.message, true); busy = false; }
  }

  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const typing = ev.target === note || ["INPUT", "SELECT", "TEXTAREA"].includes(ev.target.tagName);
    if (typing) { if (ev.key === "Escape") ev.target.blur(); return; }
    if (tracks[ev.key]) { ev.preventDefault(); decide(tracks[ev.key]); }
    else if (ev.key === "j") go(root.dataset.next);
    else if (ev.key === "k") go(root.dataset.prev);
    else if (ev.key === "n") { ev.preventDefault(); note.focus(); }
    else if (ev.key === "u") undo();
    else if (ev.key === "b") { bulk.checked = !bulk.checked; say(bulk.checked ? "bulk on" : "bulk off"); }
  });

  // Claim the case so no other annotator works it at the same time (renewed each time the page opens).
  const claim = document.getElementById("claim");
  if (root.dataset.mine === "1") {
    post("/case/" + root.dataset.case + "/claim", {})
      .then(data => { claim.textContent = "claimed by you until " + data.until; })
      .catch(e => {
        root.dataset.mine = "0";
        claim.textContent = e.message + ": read-only";
        claim.className = "error";
        document.querySelectorAll("#decide button").forEach(b => { b.disabled = true; });
      });
  }

  const nb = document.getElementById("neighbours");
  fetch(nb.dataset.src, { credentials: "same-origin" }).then(r => r.text()).then(html => { nb.innerHTML = html; })
    .catch(() => { nb.textContent = "neighbours unavailable"; });
})();
