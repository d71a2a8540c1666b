// Refreshes an element from its data-src every data-every ms (the 账号 page's login QR).
// Our own few lines instead of a library: no CDN, no build step, no inline script (CSP).
(function () {
  "use strict";
  var live = document.querySelectorAll("[data-src]");
  Array.prototype.forEach.call(live, function (el) {
    var every = parseInt(el.getAttribute("data-every"), 10) || 5000;
    function refresh() {
      fetch(el.getAttribute("data-src"), { credentials: "same-origin", cache: "no-store" })
        .then(function (r) {
          if (r.redirected || !r.ok) { throw new Error(String(r.status)); }
          return r.text();
        })
        .then(function (html) { el.innerHTML = html; })
        .catch(function () { /* offline for a moment: try again next time */ })
        .then(function () { window.setTimeout(refresh, every); });
    }
    window.setTimeout(refresh, every);
  });
})();
