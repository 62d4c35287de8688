// Swagger UI on /openapi, reading the spec this server serves (no inline script: CSP).
(function () {
  var root = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({ url: root.dataset.specUrl, dom_id: "#swagger-ui" });
})();
