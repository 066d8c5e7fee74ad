"""How every table of the report is drawn: one HTML renderer for the DataFrames the chapters display.

Introduced in chapter 01 (EDA), through :func:`defectlib.viz.setup`, which makes
:func:`to_html` the notebook's HTML view of every DataFrame. Numbers are
right-aligned and text left-aligned; floats show one decimal (two below 1, as
for a threshold), whole numbers as integers, never ``-0.0``; no cell is cut;
the index name sits in the header's corner instead of a row of its own; and a
column marked with :func:`mark_best` shows its best value in bold.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

#: A cell that reads as a number: a value, a signed difference, an interval, "a ± b", "12 %".
NUMBER = re.compile(r"^\s*[\[(]?[-+\u2212]?(\d+(\.\d+)?|\.\d+)(\s*%|\s*±.*|,.*|\]|\))?\s*$")
NEGATIVE_ZERO = re.compile(r"(?<![\d.])-(0(\.0+)?)(?![\d.])")


def mark_best(table: pd.DataFrame, columns: Mapping[object, str]) -> pd.DataFrame:
    """``table`` with its best value bolded in each of ``columns`` (``{column: "max" | "min"}``) when drawn.

    Cells may be numbers or text that starts with one (``"41.2 ± 3.1"``); the first number decides.
    """
    table = table.copy()
    table.attrs["best"] = dict(columns)
    return table


def leading_number(cell: object) -> float:
    """The number a cell starts with (NaN when none): ``"41.2 ± 3.1"`` gives 41.2."""
    if isinstance(cell, (int, float, np.integer, np.floating)) and not isinstance(cell, bool):
        return float(cell)
    match = re.match(r"^\s*[\[(]?([-+\u2212]?(\d+(\.\d+)?|\.\d+))", str(cell))
    return float(match.group(1).replace("\u2212", "-")) if match else float("nan")


def format_column(values: pd.Series) -> pd.Series:
    """One column as text: integers as integers, floats with one decimal (two when all lie below 1)."""
    if pd.api.types.is_bool_dtype(values):
        return values.map(lambda v: "yes" if v else "no")
    if pd.api.types.is_integer_dtype(values):
        return values.map(lambda v: f"{int(v)}")
    if pd.api.types.is_float_dtype(values):
        finite = values[np.isfinite(values)]
        if len(finite) and np.all(finite == np.round(finite)):
            return values.map(lambda v: f"{int(v)}" if np.isfinite(v) else "")
        decimals = 2 if len(finite) and np.abs(finite).max() < 1 else 1
        return values.map(lambda v: _clean(f"{v:.{decimals}f}") if np.isfinite(v) else "")
    return values.map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else _clean(str(v)))


def _clean(text: str) -> str:
    return NEGATIVE_ZERO.sub(r"\1", text)


def to_html(table: pd.DataFrame) -> str:
    """The report's HTML for ``table`` (see the module docstring)."""
    best = table.attrs.get("best", {})
    if not table.columns.is_unique:   # cells cannot be told apart by column: drawn plainly
        return table.to_html(classes="dataframe report-table", na_rep="")
    if (isinstance(table.index, pd.MultiIndex) or not table.index.is_unique
            or (table.index.name is None and _is_range(table.index))):
        unnamed_range = table.index.name is None and _is_range(table.index)
        shown = table.reset_index(drop=unnamed_range)
        if not unnamed_range and table.index.name is None and not isinstance(table.index, pd.MultiIndex):
            shown = shown.rename(columns={"index": ""})
        keep_index = False
    else:
        shown, keep_index = table, True
    text = pd.DataFrame({k: format_column(shown.iloc[:, k]) for k in range(shown.shape[1])})
    text.columns, text.index = shown.columns, shown.index.map(lambda v: _clean(str(v)))
    classes = text.map(lambda cell: "num" if NUMBER.match(cell) or cell in ("", "-") else "text")
    for column, how in best.items():
        if column in shown.columns:
            numbers = shown[column].map(leading_number)
            if numbers.notna().any():
                target = numbers.max() if how == "max" else numbers.min()
                hit, k = (numbers == target).to_numpy(), shown.columns.get_loc(column)   # by position
                classes.iloc[hit, k] = classes.iloc[hit, k] + " best"
    corner = table.index.name if keep_index else None
    text.index.name = None
    if corner is not None:   # the index name goes into the header's corner, not a row of its own
        text.columns = text.columns.set_names([str(corner)] + [None] * (text.columns.nlevels - 1))
    styler = text.style.set_td_classes(classes).set_table_attributes('class="dataframe report-table"')
    if not keep_index:
        styler = styler.hide(axis="index")
    return styler.to_html()


def _is_range(index: pd.Index) -> bool:
    return isinstance(index, pd.RangeIndex) or (pd.api.types.is_integer_dtype(index)
                                                and list(index) == list(range(len(index))))


def register() -> None:
    """Make :func:`to_html` the HTML view of every DataFrame in this IPython session (no-op outside one)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, to_html)
    pd.set_option("display.max_colwidth", None)
    pd.set_option("display.max_columns", None)
