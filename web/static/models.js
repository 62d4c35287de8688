// The model panel and the import form (web/templates/admin/_model_panel.html, _import_form.html).
// The panel's state is HTML rendered (and escaped) by the server, fetched again from
// /admin/models/state after a change; what this script writes itself is set with textContent.
// Writes send the CSRF token from <meta name="csrf-token"> in the X-CSRFToken header.
(function () {
  "use strict";
  if (window.sortloopModelsLoaded) return; // both partials include this script
  window.sortloopModelsLoaded = true;

  var API = "/admin/api";
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrfToken = meta ? meta.getAttribute("content") : "";

  function element(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function call(method, path, body) {
    var options = { method: method, credentials: "same-origin", headers: { "X-CSRFToken": csrfToken } };
    if (body instanceof FormData) {
      options.body = body;
    } else if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(API + path, options).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { ok: response.ok, status: response.status, body: data };
      });
    });
  }

  // A date as the server's `when` filter writes it (web/admin/formatting.py): YYYY-MM-DD HH:MM UTC.
  function when(iso) {
    var date = new Date(iso);
    if (!iso || isNaN(date.getTime())) return iso || "";
    return date.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  function setStatus(node, text, isError) {
    if (!node) return;
    node.textContent = text;
    node.classList.toggle("bad", !!isError);
  }

  // --- the model panel --------------------------------------------------------------

  function initPanel(panel) {
    var status = panel.querySelector('[data-role="panel-status"]');
    var reclassifyAfterDeploy = panel.querySelector('[data-role="reclassify-after-deploy"]');

    function showReclassification(summary) {
      var target = panel.querySelector('[data-role="reclassification"]');
      target.replaceChildren();
      if (!summary) return;
      var heading = (summary.dry_run ? "Preview" : "Applied") + " with " + (summary.model_version || "?") +
        ": " + summary.changed + " of " + summary.examined + " unreviewed submissions " +
        (summary.dry_run ? "would change." : "changed.");
      target.appendChild(element("p", heading));
      var list = element("ul");
      (summary.sentences || []).forEach(function (sentence) { list.appendChild(element("li", sentence)); });
      target.appendChild(list);
    }

    var currentShadow = null;

    function percent(value) {
      return typeof value === "number" ? (100 * value).toFixed(1) + "%" : "—";
    }

    function showShadow(report) {
      currentShadow = report || null;
      var target = panel.querySelector('[data-role="shadow"]');
      var actions = panel.querySelector('[data-role="shadow-actions"]');
      target.replaceChildren();
      actions.hidden = !report;
      if (!report) {
        target.appendChild(element("p", "No model is in shadow. Put a fine-tuned model in shadow to " +
          "judge it on live traffic before it serves.", "muted"));
        return;
      }
      target.appendChild(element("p", "Run " + report.run_id + " (" + report.version + ") is in shadow since " +
        when(report.since) + "."));
      var table = element("table", null, "compact");
      table.setAttribute("data-role", "shadow-report");
      [
        ["Texts scored", report.scored],
        ["Agreement with the model in use", percent(report.agreement)],
        ["Reviewed by admins since", report.reviewed],
        ["Accuracy of the model in use", percent(report.accuracy_active)],
        ["Accuracy of the shadow", percent(report.accuracy_shadow)],
        ["Only the model in use right", report.active_only_right],
        ["Only the shadow right", report.shadow_only_right],
        ["McNemar exact p", report.p_value === null ? "—" : Number(report.p_value).toPrecision(3)]
      ].forEach(function (pair) {
        var row = element("tr");
        row.appendChild(element("th", pair[0]));
        var cell = element("td", pair[1]);
        cell.setAttribute("data-figure", pair[0]);
        row.appendChild(cell);
        table.appendChild(row);
      });
      target.appendChild(table);
      if (report.p_value !== null) {
        target.appendChild(element("p", report.p_value < 0.05 ? "The difference is unlikely to be chance."
          : "So far the difference could be chance.", "muted"));
      }
    }

    function startShadow(runId) {
      setStatus(status, "putting run " + runId + " in shadow…", false);
      call("POST", "/shadow-model/" + encodeURIComponent(runId)).then(function (result) {
        setStatus(status, result.ok ? "Run " + runId + " is in shadow. Every web process loads it within seconds."
          : result.body.error || "could not start the shadow", !result.ok);
        refresh();
      }).catch(function () { setStatus(status, "could not start the shadow: network error", true); });
    }

    // The panel's parts are rendered by the server (web/templates/admin/_model_parts.html):
    // a refresh fetches them again and swaps each [data-part] for its fresh copy.
    function refresh() {
      return fetch("/admin/models/state", { credentials: "same-origin" }).then(function (response) {
        if (!response.ok) throw new Error("status " + response.status);
        return response.text();
      }).then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        fresh.querySelectorAll("[data-part]").forEach(function (part) {
          var old = panel.querySelector('[data-part="' + part.getAttribute("data-part") + '"]');
          if (old) old.replaceWith(document.importNode(part, true));
        });
        // Nothing to roll back while no fine-tuned model is deployed.
        var deployed = !!panel.querySelector('[data-role="models"] tr[data-run-id] strong');
        var rollback = panel.querySelector('[data-action="rollback"]');
        rollback.disabled = !deployed;
        rollback.title = deployed ? "" : "The base model is already in use.";
        return call("GET", "/deployments");
      }).then(function (result) {
        if (result && result.ok) showDeployments(result.body);
      }).catch(function () { setStatus(status, "could not load the models: network error", true); });
    }

    // What the server-rendered parts do not carry: the shadow's report (its figures change
    // with every submission) and the latest re-classification.
    function showDeployments(body) {
      fillCompareChoices(body.models || []);
      showShadow(body.shadow);
      showReclassification(body.reclassification);
      panel.querySelectorAll('button[data-action="shadow-start"]').forEach(function (button) {
        button.disabled = button.hasAttribute("data-unavailable") || !!currentShadow;
      });
    }

    // A run below the deploy criteria: the dialog asks, in words, before deploying anyway.
    function confirmBelowCriteria(runId) {
      var dialog = panel.querySelector('[data-role="deploy-dialog"]');
      if (!dialog || typeof dialog.showModal !== "function") {
        return Promise.resolve(window.confirm("Run " + runId + " did not meet the deploy criteria. Deploy it anyway?"));
      }
      dialog.querySelector('[data-role="deploy-dialog-run"]').textContent = String(runId);
      dialog.returnValue = "";
      return new Promise(function (resolve) {
        dialog.addEventListener("close", function () { resolve(dialog.returnValue === "deploy"); }, { once: true });
        dialog.showModal();
      });
    }

    function deployRun(runId, force) {
      var body = { force: force };
      if (reclassifyAfterDeploy && reclassifyAfterDeploy.checked) body.reclassify = "preview";
      setStatus(status, "Deploying run " + runId + "…", false);
      call("POST", "/deploy-model/" + encodeURIComponent(runId), body).then(function (result) {
        if (result.ok) {
          setStatus(status, "Deployed run " + runId + ". Every web process switches to it within seconds.", false);
          if (result.body.reclassify_task_id) watchReclassify(result.body.reclassify_task_id);
          if (result.body.reclassify_error) setStatus(status, result.body.reclassify_error, true);
        } else if (result.status === 409 && !force && /criteria/.test(result.body.error || "")) {
          setStatus(status, "", false);
          confirmBelowCriteria(runId).then(function (yes) { if (yes) deployRun(runId, true); });
          return;
        } else {
          setStatus(status, result.body.error || "deploy failed", true);
        }
        refresh();
      }).catch(function () { setStatus(status, "deploy failed: network error", true); });
    }

    // --- compare two models: queued on the worker, polled until the result is there ---

    var compareForm = panel.querySelector('[data-role="compare-form"]');
    var compareA = panel.querySelector('[data-role="compare-a"]');
    var compareB = panel.querySelector('[data-role="compare-b"]');
    var comparisonTarget = panel.querySelector('[data-role="comparison"]');
    var comparing = 0; // the latest comparison asked for; older answers are dropped

    function modelLabel(value) {
      return value === "base" ? "base" : "run " + value;
    }

    function fillCompareChoices(models) {
      var keepA = compareA.value, keepB = compareB.value;
      var runs = models.map(function (model) {
        var option = element("option", "Run " + model.run_id + (model.is_active_model ? " (active)" : ""));
        option.value = String(model.run_id);
        return option;
      });
      var base = element("option", "Base model");
      base.value = "base";
      compareA.replaceChildren.apply(compareA, [base].concat(runs.map(function (o) { return o.cloneNode(true); })));
      compareB.replaceChildren.apply(compareB, runs);
      if (keepA && compareA.querySelector('option[value="' + keepA + '"]')) compareA.value = keepA;
      if (keepB && compareB.querySelector('option[value="' + keepB + '"]')) compareB.value = keepB;
      compareForm.querySelector('[data-action="compare"]').disabled = !runs.length;
    }

    function showComparison(data) {
      var nameA = modelLabel(data.a.model), nameB = modelLabel(data.b.model);
      comparisonTarget.replaceChildren();
      var summary = element("p", "On " + data.num_examples + " held-out examples (" + data.test_set + "): " +
        nameA + " " + (100 * data.a.accuracy).toFixed(1) + "% vs " + nameB + " " +
        (100 * data.b.accuracy).toFixed(1) + "% accuracy; McNemar p = " + Number(data.p_value).toPrecision(3) +
        (data.significant ? " (a real difference)" : " (could be chance)") + ".");
      summary.setAttribute("data-role", "comparison-summary");
      comparisonTarget.appendChild(summary);
      var table = element("table", null, "compact");
      table.setAttribute("data-role", "comparison-table");
      var head = element("tr");
      ["Category", "F1 " + nameA, "F1 " + nameB].forEach(function (text) { head.appendChild(element("th", text)); });
      table.appendChild(head);
      (data.categories || []).forEach(function (name) {
        var row = element("tr");
        row.appendChild(element("td", name));
        row.appendChild(element("td", (data.a.per_category_f1[name] || 0).toFixed(2)));
        row.appendChild(element("td", (data.b.per_category_f1[name] || 0).toFixed(2)));
        table.appendChild(row);
      });
      comparisonTarget.appendChild(table);
    }

    function watchComparison(ticket, taskId, attempt) {
      if (ticket !== comparing) return;
      call("GET", "/compare-models/" + encodeURIComponent(taskId)).then(function (result) {
        if (ticket !== comparing) return;
        var body = result.body || {};
        if (body.state === "SUCCESS" && body.result) { showComparison(body.result); return; }
        if (body.state === "FAILURE" || !result.ok) {
          comparisonTarget.replaceChildren(element("p", "The comparison failed: " + (body.error || "unknown error"), "bad"));
          return;
        }
        if (attempt < 600) window.setTimeout(function () { watchComparison(ticket, taskId, attempt + 1); }, 1000);
        else comparisonTarget.replaceChildren(element("p", "No worker has answered yet; is the worker running?", "bad"));
      }).catch(function () {
        if (ticket === comparing) comparisonTarget.replaceChildren(element("p", "comparison failed: network error", "bad"));
      });
    }

    function compare(a, b) {
      var ticket = ++comparing;
      comparisonTarget.replaceChildren(element("p", "Comparing " + modelLabel(a) + " with " + modelLabel(b) +
        " on the worker…", "muted"));
      call("POST", "/compare-models", { a: a, b: b }).then(function (result) {
        if (ticket !== comparing) return;
        if (!result.ok) {
          comparisonTarget.replaceChildren(element("p", result.body.error || "comparison failed", "bad"));
          return;
        }
        watchComparison(ticket, result.body.task_id, 0);
      }).catch(function () { comparisonTarget.replaceChildren(element("p", "comparison failed: network error", "bad")); });
    }

    function compareWithBase(runId) {
      compareA.value = "base";
      compareB.value = String(runId);
      compare("base", String(runId));
    }

    compareForm.addEventListener("submit", function (event) {
      event.preventDefault();
      if (compareB.value) compare(compareA.value, compareB.value);
    });

    function watchReclassify(taskId, attempt) {
      attempt = attempt || 0;
      var target = panel.querySelector('[data-role="reclassification"]');
      call("GET", "/reclassify/" + encodeURIComponent(taskId)).then(function (result) {
        var body = result.body || {};
        if (body.state === "SUCCESS") { showReclassification(body.summary); refresh(); return; }
        if (body.state === "FAILURE" || !result.ok) {
          target.replaceChildren(element("p", "Re-classification failed: " + (body.error || "unknown error"), "bad"));
          return;
        }
        var progress = body.progress;
        target.replaceChildren(element("p", progress ? "Re-classifying… " + progress.done + " / " + progress.total
          : "Re-classification queued…", "muted"));
        if (attempt < 600) window.setTimeout(function () { watchReclassify(taskId, attempt + 1); }, 1000);
      });
    }

    function startReclassify(dryRun) {
      if (!dryRun && !window.confirm("Apply the model in use to every unreviewed submission?")) return;
      call("POST", "/reclassify", { dry_run: dryRun }).then(function (result) {
        if (result.ok) watchReclassify(result.body.task_id);
        else setStatus(status, result.body.error || "could not start re-classification", true);
      });
    }

    panel.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-run-id]");
      if (!button || !panel.contains(button)) return;
      var runId = button.getAttribute("data-run-id");
      if (button.getAttribute("data-action") === "deploy") deployRun(runId, false);
      else if (button.getAttribute("data-action") === "compare") compareWithBase(runId);
      else if (button.getAttribute("data-action") === "shadow-start") startShadow(runId);
    });
    panel.querySelector('[data-action="rollback"]').addEventListener("click", function () {
      if (!window.confirm("Roll back to the base model?")) return;
      call("POST", "/rollback-model", {}).then(function (result) {
        setStatus(status, result.ok ? "Rolled back to the base model." : result.body.error || "rollback failed", !result.ok);
        refresh();
      });
    });
    panel.querySelector('[data-action="shadow-stop"]').addEventListener("click", function () {
      if (!currentShadow || !window.confirm("Stop the shadow of run " + currentShadow.run_id + "?")) return;
      call("DELETE", "/shadow-model").then(function (result) {
        setStatus(status, result.ok ? "The shadow stopped." : result.body.error || "could not stop the shadow", !result.ok);
        refresh();
      });
    });
    panel.querySelector('[data-action="shadow-promote"]').addEventListener("click", function () {
      if (!currentShadow || !window.confirm("Deploy run " + currentShadow.run_id + " to serve everyone?")) return;
      deployRun(currentShadow.run_id, false);
    });
    panel.querySelector('[data-action="reclassify-preview"]').addEventListener("click", function () { startReclassify(true); });
    panel.querySelector('[data-action="reclassify-apply"]').addEventListener("click", function () { startReclassify(false); });
    panel.addEventListener("sortloop:refresh", refresh);
    call("GET", "/deployments").then(function (result) {
      if (result.ok) showDeployments(result.body);
    });
  }

  // --- the import form --------------------------------------------------------------

  function initImportForm(form) {
    var status = form.querySelector('[data-role="import-status"]');
    form.addEventListener("submit", function (event) {
      if (!window.fetch || !window.FormData) return; // the browser posts the form itself
      event.preventDefault();
      var button = form.querySelector("button[type=submit]");
      if (button) button.disabled = true;
      setStatus(status, "checking and importing…", false);
      call("POST", "/import-model", new FormData(form)).then(function (result) {
        if (result.ok) {
          setStatus(status, "Imported as run " + result.body.run_id + "; it can be deployed now.", false);
          form.reset();
          document.querySelectorAll("[data-model-panel]").forEach(function (panel) {
            panel.dispatchEvent(new Event("sortloop:refresh"));
          });
        } else {
          setStatus(status, result.body.error || "import failed", true);
        }
      }).catch(function () { setStatus(status, "import failed: network error", true); })
        .then(function () { if (button) button.disabled = false; });
    });
  }

  function start() {
    document.querySelectorAll("[data-model-panel]").forEach(initPanel);
    document.querySelectorAll("form[data-import-form]").forEach(initImportForm);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
