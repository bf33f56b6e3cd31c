// Ujumbe dashboard: the little the pages need beyond htmx. No inline scripts:
// the Content-Security-Policy allows only files from this directory.
(function () {
  "use strict";
  var plot = null;

  function drawChart() {
    var el = document.getElementById("chart");
    if (!el || typeof uPlot === "undefined") return;
    var d;
    try { d = JSON.parse(el.getAttribute("data-chart") || "{}"); } catch (e) { return; }
    if (!d.t) return;
    if (plot) { plot.destroy(); plot = null; }
    var width = Math.max(320, el.clientWidth || 800);
    plot = new uPlot({
      width: width, height: 220,
      series: [
        {},
        { label: "sent", stroke: "#3465a4", width: 2 },
        { label: "delivered", stroke: "#4e9a06", width: 2 },
        { label: "failed", stroke: "#cc0000", width: 2 }
      ],
      axes: [{}, { label: "messages" }]
    }, [d.t, d.sent, d.delivered, d.failed], el);
    el.setAttribute("data-drawn", String(d.failed.reduce(function (a, b) { return a + b; }, 0)));
  }

  // The send form's "replace the characters that force UCS-2" button.
  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest ? ev.target.closest("[data-replace-with]") : null;
    if (!btn) return;
    var text = document.getElementById("text");
    if (!text) return;
    text.value = btn.getAttribute("data-replace-with");
    text.dispatchEvent(new Event("input", { bubbles: true }));
  });

  document.addEventListener("DOMContentLoaded", drawChart);
  document.addEventListener("htmx:afterSettle", function (ev) {
    if (ev.target && (ev.target.id === "figures" || (ev.target.querySelector && ev.target.querySelector("#chart")))) drawChart();
  });
})();
