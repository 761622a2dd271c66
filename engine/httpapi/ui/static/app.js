// Ferry's browser: run, rescan and reset buttons. The session cookie
// (HttpOnly, SameSite=Strict) authenticates the request; the JSON content
// type and the same-origin fetch satisfy the server's CSRF checks.
"use strict";
document.addEventListener("click", async (ev) => {
  const b = ev.target.closest("button[data-action]");
  if (!b) return;
  const pipe = b.dataset.pipe, action = b.dataset.action;
  if (action === "reset" && !confirm(`Reset ${pipe}? Its offset is cleared: the next run reads everything again and tracks deletions.`)) return;
  const status = document.getElementById("status");
  status.className = "";
  status.textContent = `${action} ${pipe}…`;
  b.disabled = true;
  try {
    const r = await fetch(`/api/pipes/${encodeURIComponent(pipe)}/${action}`, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: "{}",
    });
    if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); return; }
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
    status.textContent = action === "run"
      ? `Ran ${pipe}: read ${body.read}, written ${body.written}, deleted ${body.deleted}.`
      : `${pipe}: ${action} done.`;
    setTimeout(() => location.reload(), 700);
  } catch (e) {
    status.className = "err";
    status.textContent = `${action} ${pipe} failed: ${e.message}`;
    b.disabled = false;
  }
});
