// Starts Swagger UI on the served OpenAPI document. Kept out of the HTML so a
// strict Content-Security-Policy (no inline scripts) still allows the page.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
  });
});
