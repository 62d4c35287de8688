// Progressive enhancement for the submissions page: save a category without reloading.
// Without JavaScript the same forms post normally. User text is only ever set with
// textContent, never as HTML.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrfToken = meta ? meta.getAttribute("content") : "";

  function setStatus(form, text, isError) {
    var status = form.querySelector(".status");
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("bad", !!isError);
  }

  document.querySelectorAll("form.category-form[data-api]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var select = form.querySelector("select[name=category]");
      if (!select || !select.value || !window.fetch) return; // let the browser post the form
      event.preventDefault();
      // Near duplicates folded under this row (checkboxes tied to the form by its id).
      var similar = Array.prototype.filter.call(form.elements, function (element) {
        return element.name === "similar_ids" && element.checked;
      });
      var button = form.querySelector("button");
      if (button) button.disabled = true;
      setStatus(form, "saving…", false);
      fetch(form.getAttribute("data-api"), {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
        body: JSON.stringify({
          category: select.value,
          similar_ids: similar.map(function (box) { return parseInt(box.value, 10); })
        })
      })
        .then(function (response) {
          return response.json().then(function (body) { return { ok: response.ok, body: body }; });
        })
        .then(function (result) {
          if (result.ok) {
            var saved = "saved (" + (result.body.is_correction ? "correction" : "confirmation") + ")";
            var also = result.body.also_saved || [];
            if (also.length) saved += " with " + also.length + " similar";
            setStatus(form, saved, false);
            also.forEach(function (other) {
              var row = document.getElementById("submission-" + other.id);
              var status = row && row.querySelector(".status");
              if (status) status.textContent = "saved (" + (other.is_correction ? "correction" : "confirmation") + ")";
            });
          } else {
            setStatus(form, result.body.error || "could not save", true);
          }
        })
        .catch(function () { setStatus(form, "could not save: network error", true); })
        .then(function () { if (button) button.disabled = false; });
    });
  });

  // Submissions a worker classifies (a slow model, an import): the count and each
  // waiting row's suggestion arrive without a reload.
  var queue = document.getElementById("classification-queue");
  var POLL_MS = 2000;

  function pendingCells() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-pending]"));
  }

  function fillRow(cell, item) {
    var text = item.predicted_category || "not classified";
    cell.textContent = text;
    cell.removeAttribute("data-pending");
    cell.classList.remove("classifying");
    var note = document.createElement("small");
    note.className = "muted";
    note.textContent = item.model_version || item.classification_error || "";
    cell.parentNode.appendChild(document.createElement("br"));
    cell.parentNode.appendChild(note);
  }

  function pollQueue() {
    var cells = pendingCells();
    var ids = cells.map(function (cell) { return cell.getAttribute("data-pending"); });
    var url = queue.getAttribute("data-api") + (ids.length ? "?ids=" + ids.join(",") : "");
    fetch(url, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (!body) return;
        queue.hidden = body.pending === 0;
        queue.textContent = body.pending + (body.pending === 1 ? " submission" : " submissions") +
          " waiting for the worker to classify " + (body.pending === 1 ? "it." : "them.");
        body.items.forEach(function (item) {
          if (item.status === "classifying") return;
          cells.forEach(function (cell) {
            if (cell.getAttribute("data-pending") === String(item.id)) fillRow(cell, item);
          });
        });
      })
      .catch(function () { /* try again at the next tick */ })
      .then(function () {
        if (!queue.hidden || pendingCells().length) window.setTimeout(pollQueue, POLL_MS);
      });
  }

  if (queue && window.fetch && (!queue.hidden || pendingCells().length)) {
    window.setTimeout(pollQueue, POLL_MS);
  }
})();
