// Interactive API docs (Swagger UI served from our own origin; no inline script, no validator call).
window.SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", validatorUrl: null });
