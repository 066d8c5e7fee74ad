import numpy as np
import pandas as pd
from bs4 import BeautifulSoup

from defectlib import tables


def _cells(html):
    soup = BeautifulSoup(html, "html.parser")
    return soup, {(td.get_text(), tuple(c for c in td["class"] if c in ("num", "text", "best")))
                  for td in soup.find_all("td")}


def test_numbers_are_formatted_once_and_aligned_right_text_left():
    table = pd.DataFrame({"mIoU": [86.182, -0.04], "images": [1344.0, 12.0], "epochs": [30, 50],
                          "threshold": [0.356, 0.5], "pipeline": ["flips + affine (scale 0.9-1.1, rotate 10°)", "d4"]},
                         index=pd.Index(["a", "b"], name="arm"))
    soup, cells = _cells(tables.to_html(table))
    assert ("86.2", ("num",)) in cells and ("0.0", ("num",)) in cells       # one decimal, never -0.0
    assert ("1344", ("num",)) in cells and ("30", ("num",)) in cells         # whole numbers as integers
    assert ("0.36", ("num",)) in cells                                        # two decimals below 1
    assert ("flips + affine (scale 0.9-1.1, rotate 10°)", ("text",)) in cells  # text whole, left
    header_rows = soup.find("thead").find_all("tr")
    assert len(header_rows) == 1 and header_rows[0].find("th").get_text() == "arm"  # no index-name row


def test_mark_best_bolds_the_best_value_of_a_column():
    table = tables.mark_best(pd.DataFrame({"val mIoU": ["41.2 ± 3.1", "44.0 ± 1.0", "39.9 ± 2.2"],
                                           "loss": [0.5, 0.2, 0.9]}, index=["a", "b", "c"]),
                             {"val mIoU": "max", "loss": "min"})
    _, cells = _cells(tables.to_html(table))
    assert ("44.0 ± 1.0", ("num", "best")) in cells and ("41.2 ± 3.1", ("num",)) in cells
    assert ("0.20", ("num", "best")) in cells
    assert tables.leading_number("[12.5, 20.0]") == 12.5 and np.isnan(tables.leading_number("none"))


def test_a_multiindex_becomes_columns_and_a_range_index_is_hidden():
    table = pd.DataFrame({"x": [1.5, 2.5]}, index=pd.MultiIndex.from_tuples([("s", "m1"), ("s", "m2")],
                                                                         names=["step", "metric"]))
    soup, cells = _cells(tables.to_html(table))
    assert [th.get_text() for th in soup.find("thead").find_all("th")] == ["step", "metric", "x"]
    assert not soup.find("tbody").find_all("th")
    soup, _ = _cells(tables.to_html(pd.DataFrame({"x": [1, 2]})))
    assert [th.get_text() for th in soup.find("thead").find_all("th")] == ["x"]


def test_repeated_row_labels_and_two_header_levels_keep_every_label():
    table = pd.DataFrame({"x": [1.5, 2.5]}, index=["a", "a"])
    soup, cells = _cells(tables.to_html(table))
    assert ("a", ("text",)) in cells and ("1.5", ("num",)) in cells
    wide = pd.DataFrame([[1.25, 2.0]], index=pd.Index(["arm1"], name="arm"),
                        columns=pd.MultiIndex.from_tuples([("val", "fold 0"), ("val", "mean")]))
    soup, _ = _cells(tables.to_html(wide))
    rows = soup.find("thead").find_all("tr")
    assert len(rows) == 2 and rows[0].find("th").get_text() == "arm"   # the corner, no index-name row


def test_the_best_value_is_marked_in_a_table_with_a_multiindex():
    index = pd.MultiIndex.from_tuples([("ref", 0, 0), ("ref", 1, 1), ("dice", 0, 0)], names=["arm", "fold", "seed"])
    table = tables.mark_best(pd.DataFrame({"val mIoU": ["46.2", "38.7", "45.4"]}, index=index), {"val mIoU": "max"})
    _, cells = _cells(tables.to_html(table))
    assert ("46.2", ("num", "best")) in cells and ("45.4", ("num",)) in cells
