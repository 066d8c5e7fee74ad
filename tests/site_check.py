"""Check the built website as a reader would see it.

    python tests/site_check.py [_build/html] [--no-browser] [--screenshots DIR]

1. Every page is parsed: no broken internal link, image or anchor; no raw
   object repr (``<IPython.core.display``, ``Styler at 0x``, ``<Figure size``),
   traceback or stderr block; every image of a chapter or book page sits in a
   ``<figure>`` with a ``<figcaption>``.
2. Every page is opened in headless Chromium at 1400 px and 390 px: no
   JavaScript console error, the page renders its article, no image fails to
   load, and the main text column does not overflow horizontally (wide tables
   scroll inside their own box).  Screenshots go to ``_build/screenshots/``.

Prints one line per problem and exits 1 if there is any.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from bs4 import BeautifulSoup

RAW_REPRS = ("<IPython.core.display", "Styler at 0x", "<Figure size", "Traceback (most recent call last)")
SKIP_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static", "_panels_static"}
WIDTHS = (1400, 390)
#: url(...) in a stylesheet (a font, an image), except inline data
CSS_URL = re.compile(r"""url\(\s*["']?(?!data:)([^"')]+)["']?\s*\)""")
FONT_FACE = re.compile(r"@font-face\s*{[^}]*}")


def stylesheet_urls(css: str) -> list[str]:
    """The local files a stylesheet makes a browser fetch: of each font face only its first source (the
    preferred format; the rest are fallbacks), and every other url()."""
    faces = FONT_FACE.findall(css)
    first_sources = [urls[0] for urls in (CSS_URL.findall(face) for face in faces) if urls]
    return first_sources + CSS_URL.findall(FONT_FACE.sub("", css))


def pages(root: Path) -> list[Path]:
    """The HTML pages of a built site, excluding theme assets, generated indexes and redirect stubs."""
    return sorted(p for p in root.rglob("*.html")
                  if not SKIP_DIRS & set(p.relative_to(root).parts) and p.name not in ("genindex.html", "search.html")
                  and 'http-equiv="Refresh"' not in p.read_text(errors="replace")[:2000])


def _local_target(page: Path, url: str) -> tuple[Path | None, str]:
    parts = urlsplit(url)
    if parts.scheme or url.startswith(("//", "mailto:", "javascript:", "data:")):
        return None, ""
    target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
    if target.is_dir():
        target = target / "index.html"
    return target, parts.fragment


def page_weight(page: Path) -> int:
    """Bytes a browser fetches from the site for ``page``: its HTML, the local images, scripts,
    stylesheets and icons it loads, and the local files (fonts) those stylesheets name, each file once."""
    soup = BeautifulSoup(page.read_text(errors="replace"), "html.parser")
    files = {page.resolve()}
    for tag, attr in (("img", "src"), ("script", "src"), ("link", "href"), ("source", "src")):
        for element in soup.find_all(tag):
            rel = set(element.get("rel") or [])
            if not element.get(attr) or (tag == "link" and not rel & {"stylesheet", "icon", "preload"}):
                continue
            target, _ = _local_target(page, element[attr])
            if target is not None and target.is_file():
                files.add(target.resolve())
    for sheet in [f for f in files if f.suffix == ".css"]:
        for url in stylesheet_urls(sheet.read_text(errors="replace")):
            target, _ = _local_target(sheet, url)
            if target is not None and target.is_file():
                files.add(target.resolve())
    return sum(f.stat().st_size for f in files)


def static_problems(root: Path) -> list[str]:
    """Problems found by reading the HTML of every page."""
    root = Path(root).resolve()
    problems, ids = [], {}

    def ids_of(path: Path) -> set[str]:
        if path not in ids:
            soup = BeautifulSoup(path.read_text(errors="replace"), "html.parser")
            ids[path] = {t.get("id") for t in soup.find_all(id=True)} | {t.get("name") for t in soup.find_all("a", attrs={"name": True})}
        return ids[path]

    for page in pages(root):
        rel = page.relative_to(root)
        soup = BeautifulSoup(page.read_text(errors="replace"), "html.parser")
        for a in soup.find_all("a", href=True):
            target, fragment = _local_target(page, a["href"])
            if target is None:
                continue
            if not target.is_file():
                problems.append(f"{rel}: broken link {a['href']!r}")
            elif fragment and target.suffix == ".html" and fragment not in ids_of(target):
                problems.append(f"{rel}: link {a['href']!r} names a missing anchor")
        for img in soup.find_all("img"):
            target, _ = _local_target(page, img.get("src", ""))
            if target is not None and not target.is_file():
                problems.append(f"{rel}: broken image {img.get('src')!r}")
        article = soup.find("article") or soup
        text = article.get_text(" ")
        for raw in RAW_REPRS:
            if raw in text:
                problems.append(f"{rel}: raw output {raw!r} on the page")
        if article.select(".stderr, .output.traceback, .output.error"):
            problems.append(f"{rel}: a stderr, error or traceback block on the page")
        if rel.parts[0] in ("notebooks", "book"):
            for img in article.find_all("img"):
                fig = img.find_parent("figure")
                if fig is None or fig.find("figcaption") is None:
                    problems.append(f"{rel}: image {Path(img.get('src', '?')).name} is not in a captioned figure")
    return problems


# what the check reads from each opened page
PAGE_STATE = """
const article = document.querySelector('article') || document.querySelector('main');
const images = [...document.images].filter(i => i.complete && i.naturalWidth === 0).map(i => i.src);
const box = article ? article.getBoundingClientRect() : null;
return {rendered: !!article && box.height > 50,
        broken: images,
        overflow: article ? article.scrollWidth - article.clientWidth : 0,
        pageOverflow: document.documentElement.scrollWidth - window.innerWidth};"""


def browser_problems(root: Path, screenshots: Path | None = None, widths=WIDTHS) -> list[str]:
    """Problems seen by headless Chromium (Debian's chromium and chromium-driver, via selenium)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    root = Path(root).resolve()
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--hide-scrollbars",
                "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    problems = []
    try:
        for page in pages(root):
            rel = page.relative_to(root)
            for width in widths:
                driver.set_window_size(width, 1000)
                driver.get(page.as_uri())
                state = driver.execute_script(PAGE_STATE)
                for _ in range(10):  # a narrow window can lay the article out a moment after 'load'
                    if state["rendered"]:
                        break
                    time.sleep(0.3)
                    state = driver.execute_script(PAGE_STATE)
                for entry in driver.get_log("browser"):
                    if entry["level"] == "SEVERE":
                        problems.append(f"{rel} @{width}px: console error: {entry['message'][:200]}")
                if not state["rendered"]:
                    problems.append(f"{rel} @{width}px: the page did not render its article")
                for src in state["broken"]:
                    problems.append(f"{rel} @{width}px: image failed to load: {src}")
                if state["overflow"] > 2 or state["pageOverflow"] > 2:
                    problems.append(f"{rel} @{width}px: the text column overflows horizontally by "
                                    f"{max(state['overflow'], state['pageOverflow'])} px")
                if screenshots is not None:
                    shot = screenshots / f"{str(rel.with_suffix('')).replace('/', '__')}-{width}.png"
                    shot.parent.mkdir(parents=True, exist_ok=True)
                    driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check the built website (see the module docstring).")
    parser.add_argument("root", nargs="?", default="_build/html")
    parser.add_argument("--no-browser", action="store_true", help="only the static checks")
    parser.add_argument("--screenshots", default="_build/screenshots")
    parser.add_argument("--weights", action="store_true", help="print every page's weight (HTML + local assets)")
    parser.add_argument("--max-page-mb", type=float, help="a page heavier than this is a problem")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not pages(root):
        print(f"site check: no pages under {root}; build the book first", file=sys.stderr)
        return 1
    problems = static_problems(root)
    for page in pages(root):
        weight = page_weight(page) / 1e6
        if args.weights:
            print(f"{weight:6.2f} MB  {page.relative_to(root)}")
        if args.max_page_mb is not None and weight > args.max_page_mb:
            problems.append(f"{page.relative_to(root)}: {weight:.2f} MB, above the {args.max_page_mb:g} MB limit")
    if not args.no_browser:
        problems += browser_problems(root, Path(args.screenshots))
    for p in problems:
        print(p)
    checked = len(pages(root))
    print(f"site check: {checked} pages, {len(problems)} problem(s)"
          + ("" if args.no_browser else f"; screenshots in {args.screenshots}"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
