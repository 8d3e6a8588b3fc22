// Drag and drop onto the upload area, and the P(GS) meter. No external resources.
(function () {
  "use strict";
  var drop = document.getElementById("drop");
  var input = document.getElementById("photo");
  var chosen = document.getElementById("chosen");
  function show() {
    if (chosen && input && input.files && input.files.length) { chosen.textContent = input.files[0].name; }
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
  var fill = document.querySelector(".meter .fill");
  if (fill) { fill.style.width = Math.max(0, Math.min(100, Number(fill.dataset.pct))) + "%"; }
  var mark = document.querySelector(".meter .mark");
  if (mark) { mark.style.left = Math.max(0, Math.min(99, Number(mark.dataset.pct))) + "%"; }
})();
