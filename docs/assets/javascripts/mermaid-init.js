// Draw every diagram with the vendored Mermaid (docs/assets/vendor/mermaid).
// The diagrams are <div class="mermaid"> blocks (superfences fence_div_format), not the
// <pre class="mermaid"> that Material's own integration picks up and would load from a CDN.
// Rendering into the light DOM lets the headless render test see each <svg>.
mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "neutral" });
document$.subscribe(function () {
  mermaid.run({ querySelector: "div.mermaid:not([data-processed])" });
});
