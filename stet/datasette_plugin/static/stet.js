/* stet: the document page. Shows the annotations of a highlighted passage on hover or focus
   (each with its replies, as the list nests them), switches layers on and off, and reports a selection in code points (browsers count UTF-16
   units; stored offsets are code points). */
(function () {
  "use strict";
  var text = document.getElementById("document-text");
  if (!text) return;
  var details = document.getElementById("annotation-details");
  var panel = document.getElementById("layer-panel");
  var output = document.getElementById("selection-offsets");
  var marks = Array.prototype.slice.call(text.querySelectorAll("mark"));
  var current = null;

  function show(mark) {
    if (!mark || mark === current || mark.classList.contains("off")) return;
    if (current) current.classList.remove("active");
    current = mark;
    mark.classList.add("active");
    var list = document.createElement("ul");
    var ids = mark.getAttribute("data-annotation-ids").split(" ");
    var here = {};
    ids.forEach(function (id) { here["annotation-" + id] = true; });
    ids.forEach(function (id) {
      var item = document.getElementById("annotation-" + id);
      if (!item || item.classList.contains("hidden-layer")) return;
      // a reply comes with its parent's thread when the parent is here too
      for (var up = item.parentElement; up && up.id !== "annotation-list"; up = up.parentElement) {
        if (here[up.id]) return;
      }
      var copy = item.cloneNode(true);  // with its replies, any depth
      copy.removeAttribute("id");
      copy.querySelectorAll("[id]").forEach(function (node) { node.removeAttribute("id"); });
      list.appendChild(copy);
    });
    details.replaceChildren(list);
  }
  function fromEvent(event) {
    var node = event.target;
    return node && node.closest ? node.closest("mark") : null;
  }
  text.addEventListener("mouseover", function (event) { show(fromEvent(event)); });
  text.addEventListener("focusin", function (event) { show(fromEvent(event)); });

  function visibleLayers() {
    var on = {};
    if (!panel) return on;
    panel.querySelectorAll("input[data-layer]").forEach(function (box) {
      if (box.checked) on[box.getAttribute("data-layer")] = true;
    });
    return on;
  }
  function applyLayers() {
    var on = visibleLayers();
    marks.forEach(function (mark) {
      var layers = mark.getAttribute("data-layers").split(" ").filter(function (l) { return on[l]; });
      var ids = mark.getAttribute("data-annotation-ids").split(" ");
      if (!layers.length) {
        mark.className = "off";
        mark.tabIndex = -1;
      } else {
        mark.className = "l" + layers[0] + (ids.length > 1 ? " multi" : "");
        mark.tabIndex = 0;
      }
    });
    document.querySelectorAll("#annotation-list li").forEach(function (item) {
      item.classList.toggle("hidden-layer", !on[item.getAttribute("data-layer")]);
    });
    if (current && current.classList.contains("off")) { current = null; details.replaceChildren(); }
  }
  if (panel) panel.addEventListener("change", applyLayers);

  function codePoints(s) {
    var n = 0;
    for (var i = 0; i < s.length; i++) {
      var c = s.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
        var d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) i++;
      }
      n++;
    }
    return n;
  }
  function onSelection() {
    var selection = window.getSelection();
    if (!selection || !selection.rangeCount || !output) return;
    var range = selection.getRangeAt(0);
    if (!text.contains(range.startContainer) || !text.contains(range.endContainer)) return;
    var before = document.createRange();
    before.selectNodeContents(text);
    before.setEnd(range.startContainer, range.startOffset);
    var start = codePoints(before.toString());
    var end = start + codePoints(range.toString());
    output.setAttribute("data-start", start);
    output.setAttribute("data-end", end);
    output.textContent = start === end ? "offset " + start : start + "–" + end + " (" + (end - start) + " characters)";
  }
  document.addEventListener("selectionchange", onSelection);
  window.stetSelectionOffsets = function () { onSelection(); return [output.getAttribute("data-start"), output.getAttribute("data-end")]; };
})();
