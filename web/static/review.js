// Keyboard review mode (/admin/review): one submission in focus, one key per decision.
// Decisions are saved through the admin API in the order they were made (a chain of
// requests), while the page moves on at once. User text is only set with textContent.
(function () {
  "use strict";
  var root = document.getElementById("review");
  if (!root || !window.fetch) return;
  root.hidden = false;

  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrfToken = meta ? meta.getAttribute("content") : "";
  var query = JSON.parse(root.getAttribute("data-query") || "{}");
  var unreviewedOnly = query.unreviewed === "1";
  var PER_PAGE = 100;

  var queue = [];        // {item, similar: [...], ticked: {id: bool}, decided: null|{category}, wasReviewed}
  var seen = {};         // ids already in the queue (folded ones too)
  var position = 0;
  var total = null;      // the queue's size when it was first read: the counter's "of N"
  var reviewed = parseInt(root.getAttribute("data-already-reviewed"), 10) || 0;
  var nextPage = 1;
  var exhausted = false;
  var loading = null;
  var undoStack = [];    // each: {entries: [{index, ids, previous}], ...}
  var selected = [];     // queue indexes marked with X
  var saving = Promise.resolve();
  var searchOpen = false;

  var categoryItems = Array.prototype.slice.call(document.querySelectorAll("#review-categories li"));
  var categories = categoryItems.map(function (li) { return li.getAttribute("data-category"); });

  function $(id) { return document.getElementById(id); }

  function setStatus(text, isError) {
    var status = $("review-status");
    status.textContent = text;
    status.classList.toggle("bad", !!isError);
  }

  function api(url, body) {
    return fetch(url, {
      method: body === undefined ? "GET" : "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) throw new Error(data.error || ("the server answered " + response.status));
        return data;
      });
    });
  }

  function listUrl(page) {
    var params = new URLSearchParams(query);
    params.set("page", String(page));
    params.set("per_page", String(PER_PAGE));
    return root.getAttribute("data-list-api") + "?" + params.toString();
  }

  // Read more of the queue. Without "include reviewed", decided submissions leave the
  // list, so page 1 is read again and only submissions not yet seen are added.
  function loadMore() {
    if (exhausted) return Promise.resolve(false);
    if (loading) return loading;
    loading = saving.then(function () { return api(listUrl(nextPage)); }).then(function (body) {
      if (total === null) total = body.total;
      var added = 0;
      body.items.forEach(function (item) {
        if (seen[item.id]) return;
        seen[item.id] = true;
        var ticked = {};
        (item.similar || []).forEach(function (other) { seen[other.id] = true; ticked[other.id] = true; });
        queue.push({ item: item, similar: item.similar || [], ticked: ticked, decided: null,
                     wasReviewed: !!item.reviewed_at });
        added += 1;
      });
      loading = null;
      if (body.items.length < PER_PAGE) { exhausted = true; return added > 0; }
      // Without "include reviewed" decided submissions leave the list: page 1 again,
      // unless everything on it was seen already (skipped ones), then the next page.
      nextPage = unreviewedOnly && added > 0 ? 1 : nextPage + 1;
      return added > 0 ? true : loadMore();
    }).catch(function (error) {
      loading = null;
      setStatus("could not read the queue: " + error.message, true);
      return false;
    });
    return loading;
  }

  function renderCounter() {
    $("review-counter").textContent = reviewed + " of " + (total || 0) + " reviewed";
    var sel = selected.length;
    $("review-selection").textContent = sel
      ? sel + " selected: pick a category (1–9 or /) to set it for all of them, Esc clears"
      : "";
  }

  function percent(value) { return Math.round(value * 100) + "%"; }

  function render() {
    renderCounter();
    var entry = queue[position];
    $("review-card").hidden = !entry;
    $("review-categories").hidden = !entry;
    $("review-done").hidden = !!entry || !exhausted;
    if (!entry) {
      $("review-position").textContent = "";
      return;
    }
    var item = entry.item;
    $("review-position").textContent = "· number " + (position + 1) + " in this queue";
    $("review-id").textContent = "#" + item.id;
    $("review-from").textContent = item.contributor_type;
    var state = entry.decided ? "saved as " + entry.decided.category
      : (item.reviewed_at ? "reviewed: " + item.category : "not reviewed");
    if (selected.indexOf(position) !== -1) state += " · selected";
    $("review-state").textContent = "· " + state;
    var message = $("review-message");
    message.textContent = "";
    var cursor = 0;
    (item.matches || []).forEach(function (span) {
      message.appendChild(document.createTextNode(item.message.slice(cursor, span[0])));
      var mark = document.createElement("mark");
      mark.textContent = item.message.slice(span[0], span[1]);
      message.appendChild(mark);
      cursor = span[1];
    });
    message.appendChild(document.createTextNode(item.message.slice(cursor)));
    $("review-suggestion").textContent = item.predicted_category || "none (not classified)";
    $("review-confidence").textContent = item.confidence === null ? "" : percent(item.confidence);
    var scores = item.scores || {};
    var others = Object.keys(scores)
      .filter(function (name) { return name !== item.predicted_category; })
      .sort(function (a, b) { return scores[b] - scores[a]; })
      .slice(0, 3)
      .map(function (name) { return name + " " + percent(scores[name]); });
    $("review-others").textContent = others.length ? "Also likely: " + others.join(", ") : "";
    categoryItems.forEach(function (li) {
      var name = li.getAttribute("data-category");
      li.querySelector(".score").textContent = name in scores ? percent(scores[name]) : "";
      li.classList.toggle("suggested", name === item.predicted_category);
      li.classList.toggle("chosen", !!entry.decided && entry.decided.category === name);
    });
    var list = $("review-similar-list");
    list.textContent = "";
    $("review-similar").hidden = entry.similar.length === 0;
    $("review-similar-count").textContent = "+" + entry.similar.length + " similar, not yet reviewed,";
    entry.similar.forEach(function (other) {
      var li = document.createElement("li");
      var label = document.createElement("label");
      var box = document.createElement("input");
      box.type = "checkbox";
      box.checked = !!entry.ticked[other.id];
      box.addEventListener("change", function () { entry.ticked[other.id] = box.checked; box.blur(); });
      label.appendChild(box);
      label.appendChild(document.createTextNode(" #" + other.id + " " + other.message));
      li.appendChild(label);
      list.appendChild(li);
    });
    if (queue.length - position <= 5) loadMore().then(function (added) { if (added) renderCounter(); });
  }

  function move(step) {
    var target = position + step;
    if (target < 0) return;
    if (target >= queue.length) {
      if (!exhausted) {
        loadMore().then(function (added) {
          if (added || target < queue.length) { position = Math.min(target, queue.length); render(); }
          else { position = queue.length; render(); }
        });
        return;
      }
      target = queue.length; // past the end: "nothing left"
    }
    position = target;
    render();
  }

  function idsOf(entry) {
    return [entry.item.id].concat(entry.similar
      .filter(function (other) { return entry.ticked[other.id]; })
      .map(function (other) { return other.id; }));
  }

  // Queue one save after the ones before it; the page does not wait for it. A save
  // that fails calls onError (the decision is taken back) and says so.
  function enqueue(work, describe, onError) {
    saving = saving.then(work).catch(function (error) {
      var back = onError ? onError() : false;
      setStatus("could not save " + describe + ": " + error.message +
                (back ? " (it is undecided again)" : ""), true);
      throw error;
    }).catch(function () {});
    return saving;
  }

  // A decision the server refused: the rows look undecided again and leave the undo list.
  function takeBack(changes, entries) {
    changes.forEach(function (change) {
      var entry = queue[change.index];
      if (!entry.decided || entry.decided.category !== change.category) return;  // decided again since
      entry.decided = change.previous.decided;
      if (!entry.wasReviewed && !entry.decided) reviewed -= 1;
    });
    var at = undoStack.indexOf(entries);
    if (at >= 0) undoStack.splice(at, 1);
    renderCounter();
    render();
    return true;
  }

  // decisions: [{index, category}] — one keystroke's worth, undone together.
  function decide(decisions) {
    var entries = decisions.map(function (decision) {
      var entry = queue[decision.index];
      return {
        index: decision.index,
        ids: idsOf(entry),
        category: decision.category,
        previous: { decided: entry.decided, reviewed: entry.wasReviewed || !!entry.decided,
                    category: entry.decided ? entry.decided.category : entry.item.category }
      };
    });
    entries.forEach(function (change) {
      var entry = queue[change.index];
      if (!entry.wasReviewed && !entry.decided) reviewed += 1;
      entry.decided = { category: change.category };
    });
    undoStack.push(entries);
    var byCategory = {};
    entries.forEach(function (change) {
      (byCategory[change.category] = byCategory[change.category] || []).push(change);
    });
    Object.keys(byCategory).forEach(function (category) {
      var changes = byCategory[category];
      var ids = [].concat.apply([], changes.map(function (change) { return change.ids; }));
      enqueue(function () {
        if (changes.length === 1) {
          var url = root.getAttribute("data-set-api").replace("/0/", "/" + changes[0].ids[0] + "/");
          return api(url, { category: category, similar_ids: changes[0].ids.slice(1) });
        }
        return api(root.getAttribute("data-bulk-api"), { ids: ids, category: category });
      }, "#" + ids.join(", #"), function () { return takeBack(changes, entries); })
        .then(function () { return null; });
    });
    setStatus(entries.length === 1
      ? "#" + entries[0].ids[0] + " saved as " + entries[0].category +
        (entries[0].ids.length > 1 ? " with " + (entries[0].ids.length - 1) + " similar" : "")
      : entries.length + " submissions saved as " + decisions[0].category, false);
    selected = [];
    // A decision on the submission in focus moves on; a decision on selected ones
    // elsewhere leaves the focus where it is.
    if (decisions.some(function (d) { return d.index === position; })) move(1); else render();
  }

  function undo() {
    var entries = undoStack.pop();
    if (!entries) { setStatus("nothing to undo", false); return; }
    entries.forEach(function (change) {
      var entry = queue[change.index];
      entry.decided = change.previous.decided;
      if (!entry.wasReviewed && !entry.decided) reviewed -= 1;
      enqueue(function () {
        if (!change.previous.reviewed) {
          return api(root.getAttribute("data-clear-api"), { ids: change.ids });
        }
        var url = root.getAttribute("data-set-api").replace("/0/", "/" + change.ids[0] + "/");
        return api(url, { category: change.previous.category, similar_ids: change.ids.slice(1) });
      }, "the undo of #" + change.ids[0]);
    });
    position = entries[0].index;
    setStatus("undone: #" + entries.map(function (c) { return c.ids[0]; }).join(", #") +
              (entries.length === 1 && !entries[0].previous.reviewed ? " is not reviewed again" : ""), false);
    render();
  }

  function pick(category) {
    if (!category) return;
    if (selected.length) {
      decide(selected.map(function (index) { return { index: index, category: category }; }));
    } else if (queue[position]) {
      decide([{ index: position, category: category }]);
    }
  }

  function accept() {
    if (selected.length) {
      var withSuggestion = selected.filter(function (index) { return queue[index].item.predicted_category; });
      if (!withSuggestion.length) { setStatus("none of the selected has a suggestion: pick a category", true); return; }
      decide(withSuggestion.map(function (index) {
        return { index: index, category: queue[index].item.predicted_category };
      }));
      return;
    }
    var entry = queue[position];
    if (!entry) return;
    if (!entry.item.predicted_category) {
      setStatus("#" + entry.item.id + " has no suggestion: pick a category (1–9 or /)", true);
      return;
    }
    decide([{ index: position, category: entry.item.predicted_category }]);
  }

  function toggleSelected() {
    if (!queue[position]) return;
    var at = selected.indexOf(position);
    if (at === -1) selected.push(position); else selected.splice(at, 1);
    move(1);
  }

  // The category search (/).
  var searchBox = $("review-search");
  var searchInput = $("review-search-input");
  var searchResults = $("review-search-results");

  function searchMatches() {
    var text = searchInput.value.trim().toLowerCase();
    return categories.filter(function (name) { return name.toLowerCase().indexOf(text) !== -1; });
  }

  function renderSearch() {
    searchResults.textContent = "";
    searchMatches().forEach(function (name, index) {
      var li = document.createElement("li");
      li.textContent = name;
      if (index === 0) li.className = "first";
      searchResults.appendChild(li);
    });
  }

  function openSearch() {
    searchOpen = true;
    searchBox.hidden = false;
    searchInput.value = "";
    renderSearch();
    searchInput.focus();
  }

  function closeSearch() {
    searchOpen = false;
    searchBox.hidden = true;
    searchInput.blur();
  }

  searchInput.addEventListener("input", renderSearch);
  searchInput.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { event.preventDefault(); closeSearch(); }
    else if (event.key === "Enter") {
      event.preventDefault();
      var first = searchMatches()[0];
      if (!first) { setStatus("no category matches \"" + searchInput.value + "\"", true); return; }
      closeSearch();
      pick(first);
    }
    event.stopPropagation();
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || searchOpen) return;
    var target = event.target;
    var tag = target && target.tagName;
    if (tag === "SELECT" || tag === "TEXTAREA" ||
        (tag === "INPUT" && target.type !== "checkbox") || (target && target.isContentEditable)) return;
    if (tag === "A" || tag === "BUTTON") {
      if (event.key === "Enter" || event.key === " ") return; // let links and buttons work
    }
    var key = event.key;
    var handled = true;
    if (key === "Enter" || key === "a" || key === "A") accept();
    else if (/^[1-9]$/.test(key)) {
      var name = categories[parseInt(key, 10) - 1];
      if (name) pick(name); else handled = false;
    }
    else if (key === "/") openSearch();
    else if (key === "j" || key === "J" || key === "ArrowDown" || key === "ArrowRight") move(1);
    else if (key === "k" || key === "K" || key === "ArrowUp" || key === "ArrowLeft") move(-1);
    else if (key === "u" || key === "U") undo();
    else if (key === "x" || key === "X") toggleSelected();
    else if (key === "?") $("review-help").hidden = !$("review-help").hidden;
    else if (key === "Escape") {
      $("review-help").hidden = true;
      if (selected.length) { selected = []; render(); }
    }
    else handled = false;
    if (handled) event.preventDefault();
  });

  // Decisions still on their way: the page warns before closing, and shows the count in
  // data-saving ("0" when every decision is stored; the browser tests wait for it).
  var pending = 0;
  function setPending(change) {
    pending += change;
    root.setAttribute("data-saving", String(pending));
  }
  var chain = enqueue;
  enqueue = function (work, describe, onError) {
    setPending(1);
    return chain(function () {
      return Promise.resolve().then(work).then(
        function (value) { setPending(-1); return value; },
        function (error) { setPending(-1); throw error; });
    }, describe, onError);
  };
  window.addEventListener("beforeunload", function (event) {
    if (pending > 0) { event.preventDefault(); event.returnValue = ""; }
  });
  root.setAttribute("data-saving", "0");

  loadMore().then(function () { render(); });
})();
