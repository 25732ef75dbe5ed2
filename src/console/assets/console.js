// revsync console: the little the pages need a script for. Everything works without
// it, except live updates and local times.
(function () {
  "use strict";

  // Times are sent in UTC (ISO 8601); show them in the viewer's own time zone.
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d)) {
        t.textContent = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
        t.title = t.getAttribute("datetime");
      }
    });
  }

  // A form with data-confirm asks before it submits (replays, pauses).
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute && e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) { e.preventDefault(); }
  });

  // Sections with data-refresh reload their HTML every data-every ms, while the page is
  // visible, keeping focus where the viewer left it.
  function refresh(el) {
    var url = el.getAttribute("data-refresh");
    var every = parseInt(el.getAttribute("data-every") || "3000", 10);
    function tick() {
      if (document.hidden || el.contains(document.activeElement)) { return schedule(); }
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (r.redirected || r.status === 401) { window.location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) { if (html !== null && html !== undefined) { el.innerHTML = html; localTimes(el); } })
        .catch(function () {})
        .then(schedule);
    }
    function schedule() { window.setTimeout(tick, every); }
    schedule();
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    document.querySelectorAll("[data-refresh]").forEach(refresh);
  });
})();
