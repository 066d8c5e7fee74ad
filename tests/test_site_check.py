import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import site_check  # noqa: E402

PAGE = """<html><body><article>
<h1 id="top">Chapter</h1>
<figure><img src="ok.png" alt="fine"><figcaption>A captioned figure.</figcaption></figure>
{extra}
</article></body></html>"""
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def _site(tmp_path, extra=""):
    page = tmp_path / "notebooks" / "ch.html"
    page.parent.mkdir(parents=True)
    (page.parent / "ok.png").write_bytes(PNG)
    page.write_text(PAGE.format(extra=extra))
    return tmp_path


def test_a_clean_page_passes(tmp_path):
    assert site_check.static_problems(_site(tmp_path, '<a href="ch.html#top">up</a>')) == []


@pytest.mark.parametrize("extra, problem", [
    ('<figure><img src="missing.png"><figcaption>x</figcaption></figure>', "broken image 'missing.png'"),
    ('<img src="ok.png">', "image ok.png is not in a captioned figure"),
    ('<a href="other.html">x</a>', "broken link 'other.html'"),
    ('<a href="ch.html#nowhere">x</a>', "names a missing anchor"),
    ("<pre>&lt;Figure size 640x480 with 1 Axes&gt;</pre>", "raw output '<Figure size'"),
    ('<div class="output stderr">warning</div>', "stderr, error or traceback block"),
])
def test_static_checks_find_each_problem(tmp_path, extra, problem):
    problems = site_check.static_problems(_site(tmp_path, extra))
    assert any(problem in p for p in problems), problems


def test_page_weight_counts_the_page_and_each_local_asset_once(tmp_path, capsys):
    root = _site(tmp_path, '<img src="ok.png"><script src="big.js"></script><link rel="stylesheet" href="big.js">'
                           '<script src="https://example.org/remote.js"></script>')
    (root / "notebooks" / "big.js").write_bytes(b"x" * 2_000_000)
    page = root / "notebooks" / "ch.html"
    assert site_check.page_weight(page) == page.stat().st_size + len(PNG) + 2_000_000
    assert site_check.main([str(root), "--no-browser", "--weights", "--max-page-mb", "1.5"]) == 1
    out = capsys.readouterr().out
    assert "2.00 MB  notebooks/ch.html" in out and "above the 1.5 MB limit" in out


def test_page_weight_counts_the_preferred_font_a_local_stylesheet_names(tmp_path):
    root = _site(tmp_path, '<link rel="stylesheet" href="../_static/icons.css">')
    static = root / "_static"
    (static / "fonts").mkdir(parents=True)
    (static / "fonts" / "solid.woff2").write_bytes(b"f" * 1000)
    (static / "fonts" / "solid.ttf").write_bytes(b"t" * 5000)   # a fallback format: not fetched
    (static / "icons.css").write_text('@font-face { src: url("fonts/solid.woff2") format("woff2"),'
                                      ' url(fonts/solid.ttf) format("truetype"); }\n'
                                      '.a { background: url("data:image/svg+xml;x"); }')
    page = root / "notebooks" / "ch.html"
    assert site_check.page_weight(page) == (page.stat().st_size + len(PNG) + 1000
                                            + (static / "icons.css").stat().st_size)


@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")), reason="no Chromium here")
def test_browser_check_fails_on_a_broken_image(tmp_path):
    root = _site(tmp_path, '<figure><img src="missing.png"><figcaption>x</figcaption></figure>')
    problems = site_check.browser_problems(root, tmp_path / "shots", widths=(390,))
    assert any("image failed to load" in p and "missing.png" in p for p in problems), problems
    assert (tmp_path / "shots" / "notebooks__ch-390.png").is_file()
    assert site_check.browser_problems(_site(tmp_path / "clean"), None, widths=(1400,)) == []
