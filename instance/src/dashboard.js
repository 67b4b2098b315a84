// Refreshes the dashboard in place: fetch the page, swap in its <main>.
// Each fetch may be answered by another instance behind the load balancer.
(function () {
  "use strict";
  var every = Number(document.body.getAttribute("data-refresh-ms")) || 30000;
  function refresh() {
    fetch(window.location.pathname, { cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html").querySelector("main");
        var current = document.querySelector("main");
        if (next && current) { current.replaceWith(next); }
        document.body.classList.remove("stale");
      })
      .catch(function () { document.body.classList.add("stale"); })
      .then(function () { window.setTimeout(refresh, every); });
  }
  window.setTimeout(refresh, every);
})();
