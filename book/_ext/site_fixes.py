"""Small Sphinx fixes for the rendered site.

- Jupyter Book 1 with sphinx-book-theme adds sphinx-thebe's configuration
  script to every page twice, which throws ``Identifier 'THEBE_JS_URL' has
  already been declared`` in the browser; each script is kept once.
- The reference list is labelled as the text cites, "Author et al., year"
  (bibliography style ``authoryear``), instead of pybtex's alpha labels.
- MathJax (1.2 MB) loads only on pages with a formula: myst-nb asks Sphinx to
  add it to every page in case a notebook output holds math.
- The theme's Font Awesome script (1.5 MB, every icon as SVG) is dropped: the
  theme's stylesheet already draws the same icons from Font Awesome's web
  fonts (0.16 MB for the solid icons the pages use).
"""
import re
from pathlib import Path

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


class AuthorYearLabels(BaseLabelStyle):
    """Labels "Last", "Last and Other" or "Last et al." followed by the year."""

    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
            people = entry.persons.get("author") or entry.persons.get("editor") or []
            names = [" ".join(p.last_names).replace("{", "").replace("}", "") for p in people]
            if len(names) > 2:
                who = f"{names[0]} et al."
            else:
                who = " and ".join(names) or entry.fields.get("title", "?")
            yield f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearStyle(UnsrtStyle):
    default_label_style = AuthorYearLabels


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for script in context.get("script_files", []):
        attrs = getattr(script, "attributes", {}) or {}
        # the two copies differ only in an empty filename given as None or ""
        key = (str(getattr(script, "filename", script) or ""), tuple(sorted((k, str(v)) for k, v in attrs.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def _mathjax_only_with_math(app, pagename, templatename, context, doctree):
    if 'class="math' in context.get("body", ""):
        return
    def is_mathjax(script):
        name = str(getattr(script, "filename", script) or "")
        body = str((getattr(script, "attributes", {}) or {}).get("body", ""))
        return "mathjax" in name.lower() or "window.MathJax" in body
    context["script_files"] = [s for s in context.get("script_files", []) if not is_mathjax(s)]


FONTAWESOME_SCRIPT = re.compile(r'\s*<script[^>]*src="[^"]*/fontawesome\.js[^"]*"[^>]*></script>')


def _drop_fontawesome_script(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    for page in Path(app.outdir).rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        lean = FONTAWESOME_SCRIPT.sub("", html)
        if lean != html:
            page.write_text(lean, encoding="utf-8")


def setup(app):
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.connect("html-page-context", _mathjax_only_with_math, priority=901)
    app.connect("build-finished", _drop_fontawesome_script)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
