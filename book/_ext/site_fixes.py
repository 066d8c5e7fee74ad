"""Small Sphinx fixes for the rendered site.

- Jupyter Book 1 with sphinx-book-theme adds sphinx-thebe's configuration
  script to every page twice, which throws ``Identifier 'THEBE_JS_URL' has
  already been declared`` in the browser; each script is kept once.
"""


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


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
