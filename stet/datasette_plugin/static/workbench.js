/* stet workbench: a selection in #document-text opens form#annotate; the buttons on each
   annotation open it to reply or revise, or open form#retract. Every write is a JSON POST to
   the workbench's API with the session cookie and Datasette's CSRF token; the server checks
   role and ownership itself. Offsets are code points (stet.js converts the browser's UTF-16). */
(function () {
  "use strict";
  var root = document.getElementById("workbench");
  var text = document.getElementById("document-text");
  var form = document.getElementById("annotate");
  var retractForm = document.getElementById("retract");
  if (!root || !text || !form) return;
  var api = root.getAttribute("data-api");
  var token = root.getAttribute("data-csrftoken");
  var documentId = Number(root.getAttribute("data-document"));
  var title = form.querySelector(".form-title");
  var quote = document.getElementById("annotate-quote");
  var spanOut = document.getElementById("annotate-span");
  var layerField = form.querySelector(".layer-field");
  var spanAtOpen = null;

  function field(f, name) { return f.elements.namedItem(name); }
  function error(f, message) {
    var p = f.querySelector(".error");
    p.textContent = message || "";
    p.hidden = !message;
  }
  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": token, "Accept": "application/json" },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.text().then(function (raw) {
        var data = null;
        try { data = JSON.parse(raw); } catch (e) { data = null; }
        if (!response.ok) throw new Error((data && data.error) || ("the server answered " + response.status));
        return data;
      });
    });
  }
  function tags(value) {
    return value.split(",").map(function (t) { return t.trim(); }).filter(function (t) { return t; });
  }
  function reloadAt(id) {
    if (id) window.location.hash = "annotation-" + id;
    window.location.reload();
  }

  // -- the selection ---------------------------------------------------------------------
  function selected() {
    var selection = window.getSelection();
    if (!selection || !selection.rangeCount || selection.isCollapsed) return null;
    var range = selection.getRangeAt(0);
    if (!text.contains(range.startContainer) || !text.contains(range.endContainer)) return null;
    var offsets = window.stetSelectionOffsets();
    var start = Number(offsets[0]), end = Number(offsets[1]);
    if (!(end > start)) return null;
    return { start: start, end: end, quote: range.toString() };
  }
  function setSpan(span) {
    field(form, "start").value = span ? span.start : "";
    field(form, "end").value = span ? span.end : "";
    quote.textContent = span ? span.quote : "";
    spanOut.textContent = span ? "(" + span.start + "–" + span.end + ")" : "";
  }
  document.addEventListener("selectionchange", function () {
    var span = selected();
    if (!span) return;
    var mode = form.getAttribute("data-mode");
    if (!form.hidden && mode === "reply") return;
    if (!form.hidden && mode === "revise") {
      if (spanAtOpen && spanAtOpen.start === span.start && spanAtOpen.end === span.end) return;
      setSpan(span);  // a new passage for the revision
      return;
    }
    open("create");
    setSpan(span);
  });

  // -- the form ----------------------------------------------------------------------------
  function open(mode, annotation, button) {
    var previous = form.getAttribute("data-mode");
    form.setAttribute("data-mode", mode);
    error(form, "");
    if (retractForm) retractForm.hidden = true;
    field(form, "reply_to").value = mode === "reply" ? annotation : "";
    field(form, "annotation").value = mode === "revise" ? annotation : "";
    layerField.hidden = mode !== "create";
    if (mode === "create") {
      title.textContent = "New annotation";
      if (previous !== "create") {  // nothing of a reply or a revision carries over
        field(form, "body").value = "";
        field(form, "tags").value = "";
        field(form, "motivation").value = "commenting";
      }
    } else if (mode === "reply") {
      title.textContent = "Reply to annotation " + annotation;
      setSpan(null);
      field(form, "body").value = "";
      field(form, "tags").value = "";
      field(form, "motivation").value = "replying";
    } else {
      title.textContent = "Revise annotation " + annotation;
      setSpan(null);
      spanAtOpen = selected();
      field(form, "body").value = button.getAttribute("data-body") || "";
      var current = [];
      try { current = JSON.parse(button.getAttribute("data-tags") || "[]"); } catch (e) { current = []; }
      field(form, "tags").value = current.join(", ");
      field(form, "motivation").value = button.getAttribute("data-motivation") || "commenting";
      form.setAttribute("data-original", JSON.stringify({
        body: field(form, "body").value, tags: field(form, "tags").value,
        motivation: field(form, "motivation").value }));
    }
    form.hidden = false;
  }
  function close(f) {
    f.hidden = true;
    error(f, "");
  }
  form.querySelector(".cancel").addEventListener("click", function () { close(form); });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var mode = form.getAttribute("data-mode");
    var body = { body: field(form, "body").value, tags: tags(field(form, "tags").value),
                 motivation: field(form, "motivation").value };
    var url = api;
    if (mode === "create") {
      if (field(form, "start").value === "") { error(form, "Select a passage first."); return; }
      var layer = field(form, "layer").value.trim();
      if (!layer) { error(form, "Choose a layer, or name a new one."); return; }
      body.document = documentId;
      body.layer = layer;
      body.start = Number(field(form, "start").value);
      body.end = Number(field(form, "end").value);
    } else if (mode === "reply") {
      body.reply_to = Number(field(form, "reply_to").value);
    } else {
      var id = field(form, "annotation").value;
      var original = JSON.parse(form.getAttribute("data-original") || "{}");
      url = api + "/" + encodeURIComponent(id) + "/revisions";
      var changed = {};
      if (body.body !== original.body) changed.body = body.body;
      if (field(form, "tags").value !== original.tags) changed.tags = body.tags;
      if (body.motivation !== original.motivation) changed.motivation = body.motivation;
      if (field(form, "start").value !== "") {
        changed.start = Number(field(form, "start").value);
        changed.end = Number(field(form, "end").value);
      }
      if (!Object.keys(changed).length) { error(form, "Nothing changed."); return; }
      body = changed;
    }
    var submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    post(url, body).then(function (record) {
      reloadAt(record && record.id);
    }, function (failure) {
      submit.disabled = false;
      error(form, failure.message);
    });
  });

  // -- reply, revise, retract -------------------------------------------------------------
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-action]") : null;
    if (!button) return;
    var id = button.getAttribute("data-annotation");
    var action = button.getAttribute("data-action");
    if (action === "retract") {
      if (!retractForm) return;
      close(form);
      field(retractForm, "annotation").value = id;
      retractForm.querySelector(".target").textContent = id;
      field(retractForm, "reason").value = "";
      error(retractForm, "");
      retractForm.hidden = false;
      field(retractForm, "reason").focus();
    } else {
      open(action, id, button);
      field(form, "body").focus();
    }
  });
  if (retractForm) {
    retractForm.querySelector(".cancel").addEventListener("click", function () { close(retractForm); });
    retractForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var id = field(retractForm, "annotation").value;
      var reason = field(retractForm, "reason").value.trim();
      post(api + "/" + encodeURIComponent(id) + "/retract", reason ? { reason: reason } : {})
        .then(function () { reloadAt(null); }, function (failure) { error(retractForm, failure.message); });
    });
  }
})();
