// Counts TTL cells down between refreshes. Loaded from /static (CSP: no inline script).
(function () {
  function fmt(ms) {
    if (ms < 0) return "-";
    var s = ms / 1000;
    if (s < 1) return Math.floor(ms) + " ms";
    if (s < 60) return s.toFixed(1) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }
  var started = Date.now();
  document.addEventListener("htmx:afterSwap", function () { started = Date.now(); stamp(); });
  function stamp() {
    document.querySelectorAll("[data-ttl-ms]").forEach(function (el) {
      if (!el.dataset.base) { el.dataset.base = el.dataset.ttlMs; el.dataset.at = String(Date.now()); }
    });
  }
  function tick() {
    stamp();
    document.querySelectorAll("[data-ttl-ms]").forEach(function (el) {
      var base = parseInt(el.dataset.base, 10);
      if (isNaN(base) || base < 0) return;
      var left = base - (Date.now() - parseInt(el.dataset.at, 10));
      el.textContent = left > 0 ? fmt(left) : "expired";
    });
  }
  setInterval(tick, 1000);
})();
