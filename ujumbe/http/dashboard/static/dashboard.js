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

  // The send form: voice fields shown for a call, the sender name for an SMS.
  document.addEventListener("change", function (ev) {
    if (!ev.target || ev.target.id !== "channel") return;
    var call = ev.target.value === "voice";
    var fields = document.getElementById("voice-fields");
    if (fields) fields.hidden = !call;
    ["sender-field", "sms-preview"].forEach(function (id) {  // an SMS's parts and sender name
      var el = document.getElementById(id);
      if (el) el.hidden = call;
    });
  });

  // "Listen": the text said in the chosen voice, fetched (POST, with the
  // CSRF token) as WAV and played from a blob: URL.
  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest ? ev.target.closest("[data-listen]") : null;
    if (!btn) return;
    var form = btn.form, audio = document.getElementById("listen-audio");
    var status = document.getElementById("listen-status");
    var body = new URLSearchParams();
    ["text", "voice", "length_factor"].forEach(function (name) {
      if (form.elements[name]) body.append(name, form.elements[name].value);
    });
    status.textContent = "rendering…";
    btn.disabled = true;
    fetch(btn.getAttribute("data-listen"), {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "x-csrf-token": btn.getAttribute("data-csrf") }
    }).then(function (r) {
      if (!r.ok) {
        return r.text().then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var msg = doc.querySelector(".error, main p");
          throw new Error(msg ? msg.textContent.trim() : "HTTP " + r.status);
        });
      }
      return r.blob();
    }).then(function (blob) {
      if (audio.src && audio.src.indexOf("blob:") === 0) URL.revokeObjectURL(audio.src);
      audio.src = URL.createObjectURL(blob);
      audio.setAttribute("data-bytes", String(blob.size));
      status.textContent = "";
      audio.play().catch(function () {});
    }).catch(function (e) {
      status.textContent = e.message;
    }).finally(function () { btn.disabled = false; });
  });

  document.addEventListener("DOMContentLoaded", drawChart);
  document.addEventListener("htmx:afterSettle", function (ev) {
    if (ev.target && (ev.target.id === "figures" || (ev.target.querySelector && ev.target.querySelector("#chart")))) drawChart();
  });
})();
