// The training dashboard (web/templates/admin/training.html): start a run after a
// confirmation, follow it through the status API without reloading, list the history.
// Every value from the server is set with textContent, never as HTML. Writes send the CSRF
// token from <meta name="csrf-token"> in the X-CSRFToken header.
(function () {
  "use strict";

  var API = "/admin/api";
  var ACTIVE = ["queued", "preparing", "training", "evaluating"];
  var POLL_MS = 1000;
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrfToken = meta ? meta.getAttribute("content") : "";
  var root, pollTimer = null, watchedRun = null, lastStatus = null;

  function $(role) { return root.querySelector('[data-role="' + role + '"]'); }

  function element(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function call(method, path, body) {
    var options = { method: method, credentials: "same-origin", headers: { "X-CSRFToken": csrfToken } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(API + path, options).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { ok: response.ok, status: response.status, body: data };
      });
    });
  }

  function setText(node, text, isError) {
    if (!node) return;
    node.textContent = text || "";
    node.classList.toggle("bad", !!isError);
  }

  function percent(value) {
    return value === null || value === undefined ? "–" : (value * 100).toFixed(1) + "%";
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return seconds + " s";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min " + (seconds % 60) + " s";
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function runUrl(runId) {
    return root.getAttribute("data-run-url").replace(/0$/, String(runId));
  }

  function refreshModelPanel() {
    var panel = document.querySelector("[data-model-panel]");
    if (panel) panel.dispatchEvent(new Event("sortloop:refresh"));
  }

  // --- the start form -------------------------------------------------------------

  function readConfig() {
    var form = $("start-form");
    var config = {
      method: form.elements.method.value,
      lora_r: parseInt(form.elements.lora_r.value, 10),
      learning_rate: parseFloat(form.elements.learning_rate.value),
      epochs: parseInt(form.elements.epochs.value, 10),
      split: [
        parseFloat(form.elements.split_train.value),
        parseFloat(form.elements.split_val.value),
        parseFloat(form.elements.split_test.value),
      ],
      cross_validation: form.elements.cross_validation.checked,
    };
    var problems = [];
    if (!(config.learning_rate >= 0.0001 && config.learning_rate <= 0.0005)) problems.push("learning rate must be from 0.0001 to 0.0005");
    if (!(config.epochs >= 1 && config.epochs <= 10) || String(config.epochs) !== form.elements.epochs.value.trim()) problems.push("epochs must be a whole number from 1 to 10");
    var sum = config.split.reduce(function (a, b) { return a + b; }, 0);
    if (config.split.some(function (part) { return !(part > 0); }) || Math.abs(sum - 1) > 1e-6) problems.push("the three split shares must be above 0 and sum to 1");
    return { config: config, problems: problems };
  }

  function describe(config) {
    return "Method " + config.method + (config.method === "lora" ? ", LoRA rank " + config.lora_r : "") +
      ", learning rate " + config.learning_rate + ", up to " + config.epochs + " epoch(s), split " +
      config.split.join(" / ") + (config.cross_validation ? ", with cross-validation" : "") + ".";
  }

  function formatSeconds(seconds) {
    if (seconds < 90) return "about " + Math.max(1, Math.round(seconds)) + " s";
    if (seconds < 5400) return "about " + Math.round(seconds / 60) + " min";
    return "about " + (seconds / 3600).toFixed(1) + " h";
  }

  // The expected duration, before the admin confirms (scaled from the last similar run).
  function showEstimate(config) {
    var node = $("confirm-estimate");
    setText(node, "Estimating the duration…");
    call("POST", "/training-estimate", config).then(function (result) {
      if (!result.ok) { setText(node, result.body.error || "No estimate available."); return; }
      var estimate = result.body;
      setText(node, estimate.seconds === null
        ? "Expected duration: unknown (" + estimate.basis + ")."
        : "Expected duration: " + formatSeconds(estimate.seconds) + " for " + estimate.num_examples +
          " examples (" + estimate.basis + ").");
    }, function () { setText(node, "No estimate: the server could not be reached."); });
  }

  function setupForm() {
    var form = $("start-form");
    var confirmBox = $("confirm");
    var pending = null;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var read = readConfig();
      if (read.problems.length) {
        setText($("form-status"), "Check the form: " + read.problems.join("; ") + ".", true);
        return;
      }
      setText($("form-status"), "");
      pending = read.config;
      setText($("confirm-summary"), describe(pending));
      showEstimate(pending);
      confirmBox.hidden = false;
      confirmBox.querySelector('[data-action="confirm-start"]').focus();
    });
    confirmBox.querySelector('[data-action="cancel-start"]').addEventListener("click", function () {
      confirmBox.hidden = true;
      pending = null;
    });
    confirmBox.querySelector('[data-action="confirm-start"]').addEventListener("click", function () {
      if (!pending) return;
      var button = this;
      button.disabled = true;
      call("POST", "/start-training", pending).then(function (result) {
        button.disabled = false;
        confirmBox.hidden = true;
        if (result.status === 202) {
          setText($("form-status"), "Run " + result.body.run_id + " started.");
          setStartEnabled(false);
          watch(result.body.run_id);
          loadHistory();
        } else {
          setText($("form-status"), result.body.error || "The run could not be started (" + result.status + ").", true);
        }
      }, function () {
        button.disabled = false;
        setText($("form-status"), "The server could not be reached.", true);
      });
    });
  }

  function setStartEnabled(enabled) {
    var ready = root.getAttribute("data-ready") === "true" && root.getAttribute("data-enabled") === "true";
    $("start-form").querySelector('[data-action="review"]').disabled = !(enabled && ready);
  }

  // --- the live progress ----------------------------------------------------------

  function showStatus(status) {
    var card = $("progress-card");
    card.hidden = false;
    var value = Math.round((status.progress || 0) * 100);
    $("progress-fill").style.width = value + "%";
    $("progress-bar").setAttribute("aria-valuenow", String(value));
    setText($("progress-run"), "#" + status.run_id);
    setText($("progress-status"), status.status);
    setText($("progress-percent"), value + "%");
    setText($("progress-stage"), status.stage);
    setText($("progress-epoch"), status.epoch ? "epoch " + status.epoch + " ·" : "");
    setText($("progress-loss"), status.loss !== null && status.loss !== undefined ? "loss " + Number(status.loss).toFixed(4) + " ·" : "");
    setText($("progress-eta"), status.eta_seconds !== null && status.eta_seconds !== undefined && ACTIVE.indexOf(status.status) >= 0 ? "about " + duration(status.eta_seconds) + " left" : "");
    card.classList.toggle("is-active", ACTIVE.indexOf(status.status) >= 0);
    var cancel = card.querySelector('[data-action="cancel-run"]');
    cancel.hidden = ACTIVE.indexOf(status.status) < 0;
    cancel.disabled = !!status.cancel_requested;
    var outcome = $("progress-outcome");
    outcome.textContent = "";
    outcome.classList.remove("bad");
    if (status.status === "completed") {
      var results = status.results || {};
      outcome.appendChild(document.createTextNode(
        "Completed: accuracy " + percent(results.accuracy) + " against " + percent(results.baseline_accuracy) +
        " for the base model; " + (results.meets_criteria ? "meets" : "does not meet") + " the deploy criteria. "));
      var link = element("a", "See the run details");
      link.href = runUrl(status.run_id);
      outcome.appendChild(link);
    } else if (status.status === "failed") {
      setText(outcome, "Failed: " + (status.error || "unknown error"), true);
    } else if (status.status === "cancelled") {
      setText(outcome, "Cancelled.");
    } else if (status.cancel_requested) {
      setText(outcome, "Cancelling…");
    }
  }

  function watch(runId) {
    watchedRun = runId;
    if (pollTimer) window.clearTimeout(pollTimer);
    poll();
  }

  function poll() {
    var runId = watchedRun;
    call("GET", "/training-status/" + runId).then(function (result) {
      if (runId !== watchedRun) return;
      if (!result.ok) {
        setText($("progress-outcome"), result.body.error || "Status unavailable", true);
        pollTimer = window.setTimeout(poll, POLL_MS * 3);
        return;
      }
      showStatus(result.body);
      if (result.body.status !== lastStatus) {
        lastStatus = result.body.status;
        loadHistory(); // the history's status column follows the run's stages
      }
      if (ACTIVE.indexOf(result.body.status) >= 0) {
        pollTimer = window.setTimeout(poll, POLL_MS);
      } else {
        pollTimer = null;
        setStartEnabled(true);
        refreshModelPanel();
      }
    }, function () {
      pollTimer = window.setTimeout(poll, POLL_MS * 3);
    });
  }

  function setupCancel() {
    $("progress-card").querySelector('[data-action="cancel-run"]').addEventListener("click", function () {
      if (!watchedRun || !window.confirm("Cancel run " + watchedRun + "?")) return;
      var button = this;
      button.disabled = true;
      call("POST", "/cancel-training/" + watchedRun).then(function (result) {
        if (!result.ok) {
          button.disabled = false;
          setText($("progress-outcome"), result.body.error || "The run could not be cancelled.", true);
        } else {
          setText($("progress-outcome"), "Cancelling…");
        }
      });
    });
  }

  // --- history --------------------------------------------------------------------

  function deploy(runId, force) {
    call("POST", "/deploy-model/" + runId, force ? { force: true } : {}).then(function (result) {
      var status = $("history-status");
      if (result.ok) {
        setText(status, "Deployed " + (result.body.active_model || "run " + runId) + ".");
        loadHistory();
        refreshModelPanel();
      } else if (result.status === 409 && !force && /criteria/i.test(result.body.error || "") &&
                 window.confirm("Run " + runId + " did not meet the deploy criteria: on the held-out test " +
                                "texts it is not clearly better than the base model. Deploy it anyway?")) {
        deploy(runId, true);
      } else {
        setText(status, result.body.error || "Deploy failed (" + result.status + ").", true);
      }
    });
  }

  // The rows are rendered by the server (web/templates/admin/_run_history_rows.html).
  function loadHistory() {
    fetch(root.getAttribute("data-history-url"), { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) throw new Error("status " + response.status);
      return response.text();
    }).then(function (html) {
      var fresh = new DOMParser().parseFromString("<table><tbody>" + html + "</tbody></table>", "text/html");
      $("history").querySelector("tbody").replaceChildren.apply(
        $("history").querySelector("tbody"),
        Array.prototype.map.call(fresh.querySelectorAll("tbody > tr"), function (row) { return document.importNode(row, true); }));
    }).catch(function () { setText($("history-status"), "History unavailable: network error", true); });
  }

  function setupHistory() {
    $("history").addEventListener("click", function (event) {
      var button = event.target.closest('button[data-action="deploy-run"]');
      if (!button) return;
      var runId = parseInt(button.getAttribute("data-run-id"), 10);
      if (window.confirm("Deploy run " + runId + " as the model in use?")) deploy(runId, false);
    });
  }

  function start() {
    root = document.getElementById("training-dashboard");
    if (!root) return;
    setupForm();
    setupCancel();
    setupHistory();
    var active = root.getAttribute("data-active-run-id");
    if (active) watch(parseInt(active, 10));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
