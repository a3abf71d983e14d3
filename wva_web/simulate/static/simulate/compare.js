// Progress of a comparison run without reloading the page.
// data-poll-ms milliseconds after each response the page reads progress.json
// again and updates the status, the progress bar and the message. Once the
// run has finished it loads the figures table and the plots, once, from
// data-results-url.
(function () {
  "use strict";
  var section = document.getElementById("run-progress");
  if (!section) {
    return;
  }
  var progressUrl = section.dataset.progressUrl;
  var resultsUrl = section.dataset.resultsUrl;
  var periodMs = parseInt(section.dataset.pollMs, 10) || 1000;
  var hintAfterS = parseFloat(section.dataset.queuedHintS) || 30;
  var finished = section.dataset.status === "succeeded" || section.dataset.status === "failed";

  function setText(id, text) {
    var element = document.getElementById(id);
    if (element) {
      element.textContent = text;
    }
  }

  function show(data) {
    var status = document.getElementById("run-status");
    if (status) {
      status.textContent = data.status;
      status.className = "run-" + data.status;
    }
    section.dataset.status = data.status;
    var bar = document.getElementById("run-progress-bar");
    if (bar) {
      bar.value = data.progress;
    }
    setText("run-progress-percent", (data.progress * 100).toFixed(1) + "%");
    setText("run-progress-message", data.message || "");
    var hint = document.getElementById("run-queued-hint");
    if (hint) {
      hint.hidden = !(data.queued_for_s !== null && data.queued_for_s > hintAfterS);
    }
  }

  function loadResults() {
    fetch(resultsUrl, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) {
          window.setTimeout(loadResults, periodMs);
          return;
        }
        document.getElementById("run-results").innerHTML = html;
        ["run-progress-bar", "run-progress-percent", "run-queued-hint"].forEach(function (id) {
          var element = document.getElementById(id);
          if (element) {
            element.hidden = true;
          }
        });
      })
      .catch(function () { window.setTimeout(loadResults, periodMs); });
  }

  function poll() {
    fetch(progressUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (data) {
          show(data);
          finished = data.finished;
        }
      })
      .catch(function () { /* the next poll tries again */ })
      .then(function () {
        if (finished) {
          loadResults();
        } else {
          window.setTimeout(poll, periodMs);
        }
      });
  }

  if (!finished) {
    poll();
  }
})();
