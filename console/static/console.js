// Keyboard shortcuts of the console: an element with data-key="m" is clicked (a radio button is
// chosen) when that key is pressed outside a text field. Also: "back" links.
(function () {
  "use strict";
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    if (t && (t.tagName === "INPUT" && t.type !== "radio" && t.type !== "checkbox" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) return;
    var key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    var el = document.querySelector('[data-key="' + key + '"]');
    if (!el) return;
    e.preventDefault();
    if (el.type === "radio") { el.checked = true; el.focus(); } else { el.click(); }
  });
  document.addEventListener("click", function (e) {
    var a = e.target.closest && e.target.closest("[data-back]");
    if (a && history.length > 1) { e.preventDefault(); history.back(); }
  });
  // the engineer's form: tables of the chosen source only
  document.addEventListener("change", function (e) {
    if (e.target.id !== "source") return;
    showTables(e.target.value);
  });
  function showTables(src) {
    document.querySelectorAll("label.tbl").forEach(function (l) {
      var mine = l.getAttribute("data-source") === src;
      l.hidden = !mine;
      if (!mine) l.querySelector("input").checked = false;
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var s = document.getElementById("source");
    if (s) showTables(s.value);
  });
})();
