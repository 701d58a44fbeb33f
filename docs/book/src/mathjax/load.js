// MathJax 3 from this site (hooks.py copies it next to this file), set to the delimiters of Jupyter's markdown.
window.MathJax = {
  tex: {
    inlineMath: [["$", "$"], ["\\(", "\\)"]],
    displayMath: [["$$", "$$"], ["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
};
const mathjax = document.createElement("script");
mathjax.src = new URL("tex-chtml-full.js", document.currentScript.src).href;
mathjax.async = true;
document.head.appendChild(mathjax);
