// Screening pages: drag and drop (several photos), the P(GS) meter and threshold mark, the printed reference.
// No external resources; inline styles are not allowed by the page's CSP, so sizes are set here.
(function () {
  "use strict";
  var drop = document.getElementById("drop");
  var input = document.getElementById("photo");
  var chosen = document.getElementById("chosen");
  function show() {
    if (!chosen || !input || !input.files || !input.files.length) { return; }
    chosen.textContent = input.files.length === 1 ? input.files[0].name
      : (chosen.dataset.template || "{n}").replace("{n}", String(input.files.length));
  }
  if (drop && input) {
    input.addEventListener("change", show);
    ["dragenter", "dragover"].forEach(function (ev) {
      drop.addEventListener(ev, function (e) { e.preventDefault(); drop.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (ev) {
      drop.addEventListener(ev, function (e) { e.preventDefault(); drop.classList.remove("over"); });
    });
    drop.addEventListener("drop", function (e) {
      if (e.dataTransfer && e.dataTransfer.files.length) { input.files = e.dataTransfer.files; show(); }
    });
  }
  function clamp(v, hi) { return Math.max(0, Math.min(hi, Number(v))); }
  document.querySelectorAll(".meter .fill").forEach(function (el) { el.style.width = clamp(el.dataset.pct, 100) + "%"; });
  document.querySelectorAll(".meter .mark, .meter .mark-label").forEach(function (el) {
    el.style.left = clamp(el.dataset.pct, 99.5) + "%";
  });
  // The clinician's reference stays in this page: it is copied into the printed header, never submitted.
  var ref = document.getElementById("reference");
  var refOut = document.getElementById("reference-print");
  if (ref && refOut) {
    ref.addEventListener("input", function () { refOut.textContent = ref.value; });
  }
  var printBtn = document.getElementById("print");
  if (printBtn) { printBtn.addEventListener("click", function () { window.print(); }); }
})();
