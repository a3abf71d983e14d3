// Live refresh of the console pages.
// Every data-live-poll-s seconds the page reads /live.json and updates the
// elements marked data-live="<key>". Pages marked data-live-reload="1"
// reload when a newer control cycle has finished, so their charts and
// tables show it; forms on other pages are left alone.
(function () {
  "use strict";
  var body = document.body;
  var url = body.dataset.liveUrl;
  var periodMs = (parseFloat(body.dataset.livePollS) || 10) * 1000;
  var shownCycle = body.dataset.liveCycle || "";
  var reloadOnCycle = body.dataset.liveReload === "1";
  if (!url) {
    return;
  }

  function apply(data) {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      var value = data[el.dataset.live];
      el.textContent = value === null || value === undefined ? "unknown" : value;
    });
    var latest = data.last_cycle ? String(data.last_cycle.id) : "";
    if (reloadOnCycle && latest !== shownCycle) {
      window.location.reload();
    }
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) { if (data) { apply(data); } })
      .catch(function () { /* the next poll tries again */ });
  }

  window.setInterval(poll, periodMs);
})();
