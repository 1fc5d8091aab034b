// The API's interactive documentation (/docs): Swagger UI, served from this origin (no CDN), started
// here rather than in an inline script so the page's Content-Security-Policy allows no inline code.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout",
});
