// Typeset every formula with the vendored KaTeX (docs/assets/vendor/katex).
// pymdownx.arithmatex (generic: true) wraps inline math as <span class="arithmatex">\(...\)</span>
// and display math as <div class="arithmatex">\[...\]</div>. Errors are rendered in place as
// .katex-error (throwOnError: false) so the headless render test can find them.
(function () {
  function typeset(root) {
    root.querySelectorAll(".arithmatex").forEach(function (el) {
      var display = el.tagName === "DIV";
      var tex = el.textContent.trim();
      tex = display
        ? tex.replace(/^\\\[/, "").replace(/\\\]$/, "")
        : tex.replace(/^\\\(/, "").replace(/\\\)$/, "");
      katex.render(tex, el, { displayMode: display, throwOnError: false });
    });
  }
  document$.subscribe(function (doc) {
    typeset(doc.body);
  });
})();
