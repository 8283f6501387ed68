// The command dashboard refreshes its panels: it asks /command/panels with the ETag it holds
// and swaps the HTML in when the figures changed (a 304 costs the server no rendering).
// Plain script, no library: the page must work on an intranet without internet access.
(function () {
  "use strict";
  var panels = document.getElementById("panels");
  var status = document.getElementById("refresh-status");
  if (!panels) return;
  var url = panels.dataset.refreshUrl;
  var every = Math.max(1, Number(panels.dataset.refreshSeconds) || 15) * 1000;
  var etag = panels.dataset.etag || "";

  function say(text, stale) {
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("stale", !!stale);
  }

  function poll() {
    var headers = etag ? { "If-None-Match": etag } : {};
    fetch(url, { headers: headers, credentials: "same-origin", cache: "no-store", redirect: "error" })
      .then(function (response) {
        if (response.status === 401 || response.status === 403) {
          // The session ended, or the account lost the role: the page itself says which.
          window.location.assign("/command");
          return null;
        }
        if (response.status === 304) {
          say("checked " + new Date().toLocaleTimeString(), false);
          return null;
        }
        if (!response.ok) {
          say("refresh failed (" + response.status + "); retrying", true);
          return null;
        }
        return response.text().then(function (html) {
          panels.innerHTML = html;
          etag = response.headers.get("ETag") || "";
          panels.dataset.etag = etag;
          say("updated " + new Date().toLocaleTimeString(), false);
        });
      })
      .catch(function () {
        say("offline; retrying", true);
      })
      .then(function () {
        window.setTimeout(poll, every);
      });
  }

  window.setTimeout(poll, every);
})();
