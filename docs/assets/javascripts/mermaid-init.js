// Draw every diagram with the vendored Mermaid (docs/assets/vendor/mermaid).
// The diagrams are <div class="mermaid"> blocks (superfences fence_div_format), not the
// <pre class="mermaid"> that Material's own integration picks up and would load from a CDN.
// Rendering into the light DOM lets the headless render test see each <svg>.
mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "neutral" });

// Mermaid scales a diagram down to the column (width 100%, max-width its natural width):
// on a phone a wide flowchart's labels end up 6 px high. Never shrink the labels below
// LEGIBLE_PX: give the drawing a minimum width at that scale, and let its box
// (div.mermaid, overflow-x: auto) scroll sideways instead.
var LEGIBLE_PX = 12;

function keepLegible(svg) {
  var viewBox = svg.viewBox && svg.viewBox.baseVal;
  if (!viewBox || !viewBox.width) return;
  var smallest = Infinity;
  svg.querySelectorAll("text, span, p, div").forEach(function (el) {
    if (!el.textContent.trim() || el.querySelector("span, p, div, tspan")) return;
    smallest = Math.min(smallest, parseFloat(getComputedStyle(el).fontSize));
  });
  if (!isFinite(smallest)) return;
  var scale = Math.min(1, LEGIBLE_PX / smallest);
  svg.style.minWidth = Math.floor(viewBox.width * scale) + "px";
}

document$.subscribe(function () {
  var pending = document.querySelectorAll("div.mermaid:not([data-processed])");
  mermaid
    .run({ nodes: pending })
    .finally(function () {
      pending.forEach(function (box) {
        var svg = box.querySelector("svg");
        if (svg) keepLegible(svg);
      });
      document.body.dataset.diagrams = "drawn";
    });
});
