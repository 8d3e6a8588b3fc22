// Renders /openapi.json as a list of endpoints (a local stand-in for Swagger UI, which needs a CDN).
(function () {
  "use strict";
  var root = document.getElementById("endpoints");
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text) { e.textContent = text; }
    if (cls) { e.className = cls; }
    return e;
  }
  fetch("/openapi.json").then(function (r) { return r.json(); }).then(function (spec) {
    root.textContent = "";
    root.appendChild(el("h2", spec.info.title + " " + (spec.info.version || "")));
    root.appendChild(el("p", spec.info.description || ""));
    Object.keys(spec.paths).forEach(function (path) {
      var ops = spec.paths[path];
      Object.keys(ops).forEach(function (method) {
        var op = ops[method];
        var box = el("section", "", "endpoint");
        box.appendChild(el("h3", method.toUpperCase() + " " + path));
        if (op.summary) { box.appendChild(el("p", op.summary, "summary")); }
        if (op.description) { box.appendChild(el("p", op.description)); }
        (op.parameters || []).forEach(function (p) {
          box.appendChild(el("p", "query " + p.name + (p.required ? " (required)" : " (optional)"), "param"));
        });
        if (op.requestBody) {
          box.appendChild(el("p", "body: " + Object.keys(op.requestBody.content).join(", "), "param"));
        }
        var ul = el("ul");
        Object.keys(op.responses || {}).forEach(function (code) {
          ul.appendChild(el("li", code + ": " + (op.responses[code].description || "")));
        });
        box.appendChild(ul);
        root.appendChild(box);
      });
    });
  }).catch(function (err) { root.textContent = "Could not load /openapi.json: " + err; });
})();
