// Progressive enhancement for the Submissions and Training data pages. Without
// JavaScript the same forms post normally and the Filter button applies the filters.
// User text is only ever set with textContent, never as HTML.
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

  // Save a row's category without reloading (delegated: rows may be replaced by a filter).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form.category-form[data-api]")) return;
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

  // Filters apply as they change: the results are fetched and swapped in place, and the
  // address follows, so a reload or a shared link shows the same list.
  document.querySelectorAll("form[data-live-filters]").forEach(function (form) {
    var region = document.querySelector(form.getAttribute("data-live-filters"));
    if (!region || !window.fetch || !window.DOMParser) return;
    var button = form.querySelector("[data-role=filter-button]");
    if (button) button.hidden = true;
    var timer = null;
    var latest = 0;

    function apply() {
      var params = new URLSearchParams(new FormData(form));
      Array.from(params.keys()).forEach(function (key) {
        if (!params.get(key)) params.delete(key);
      });
      var url = form.getAttribute("action") + (params.toString() ? "?" + params.toString() : "");
      var ticket = ++latest;
      region.setAttribute("aria-busy", "true");
      fetch(url, { credentials: "same-origin" })
        .then(function (response) { return response.text(); })
        .then(function (html) {
          if (ticket !== latest) return; // a newer filter is on its way
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(region.id);
          if (!fresh) return;
          region.replaceChildren.apply(region, Array.from(fresh.childNodes));
          history.replaceState(null, "", url);
          region.removeAttribute("aria-busy");
          region.dispatchEvent(new CustomEvent("results-replaced", { bubbles: true }));
        })
        .catch(function () { form.submit(); });
    }

    form.addEventListener("change", function (event) {
      if (event.target.type === "search") return; // typing is handled below
      apply();
    });
    form.addEventListener("input", function (event) {
      if (event.target.type !== "search") return;
      clearTimeout(timer);
      timer = setTimeout(apply, 300);
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      clearTimeout(timer);
      apply();
    });
  });

  // Row selection for bulk actions: shift-click ticks a range, the header box ticks the
  // page, and the count says what the bulk form will change.
  var lastClicked = null;

  function rowBoxes() {
    return Array.from(document.querySelectorAll("input.row-select"));
  }

  function describeSelection() {
    var counter = document.getElementById("bulk-count");
    if (!counter) return;
    var all = document.getElementById("bulk-all-matching");
    var ticked = rowBoxes().filter(function (box) { return box.checked; }).length;
    if (all && all.checked) {
      counter.textContent = "Every submission matching this filter is selected.";
    } else {
      counter.textContent = ticked + " selected (shift-click ticks a range).";
    }
    var pageBox = document.querySelector("[data-role=select-page]");
    if (pageBox) {
      pageBox.hidden = false;
      var boxes = rowBoxes();
      pageBox.checked = boxes.length > 0 && ticked === boxes.length;
    }
  }

  document.addEventListener("click", function (event) {
    var box = event.target;
    if (box.matches && box.matches("input.row-select")) {
      if (event.shiftKey && lastClicked && lastClicked !== box) {
        var boxes = rowBoxes();
        var from = boxes.indexOf(lastClicked);
        var to = boxes.indexOf(box);
        if (from !== -1 && to !== -1) {
          boxes.slice(Math.min(from, to), Math.max(from, to) + 1).forEach(function (other) {
            other.checked = box.checked;
          });
        }
      }
      lastClicked = box;
      describeSelection();
    } else if (box.matches && box.matches("[data-role=select-page]")) {
      rowBoxes().forEach(function (other) { other.checked = box.checked; });
      describeSelection();
    } else if (box.id === "bulk-all-matching") {
      describeSelection();
    }
  });

  document.addEventListener("submit", function (event) {
    var question = event.submitter && event.submitter.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  document.addEventListener("results-replaced", function () { lastClicked = null; describeSelection(); });
  describeSelection();

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
        polling = false;
        schedule();
      });
  }

  // One poll at a time, while anything waits: also after the filters replaced the
  // rows (the new page may hold rows still classifying).
  var polling = false;
  function schedule() {
    if (polling || !(!queue.hidden || pendingCells().length)) return;
    polling = true;
    window.setTimeout(pollQueue, POLL_MS);
  }

  if (queue && window.fetch) {
    schedule();
    document.addEventListener("results-replaced", schedule);
  }
})();
