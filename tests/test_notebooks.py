"""What the committed notebooks weigh: each at most 4 MB, photographs stored as JPEG rather than PNG."""
import base64
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
MAX_NOTEBOOK_MB = 4.0
#: A PNG output above this is a photograph grid that should have been stored as JPEG (viz.glue_figure(photo=True)).
MAX_PNG_KB = 500


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_weight(path):
    assert path.stat().st_size <= MAX_NOTEBOOK_MB * 1e6, f"{path.name}: {path.stat().st_size / 1e6:.1f} MB"
    for k, cell in enumerate(json.loads(path.read_text())["cells"]):
        for output in cell.get("outputs", []):
            data = output.get("data", {})   # glued figures are stored under papermill's record type
            png = data.get("image/png") or data.get("application/papermill.record/image/png")
            if png:
                kb = len(base64.b64decode("".join(png))) / 1e3
                assert kb <= MAX_PNG_KB, f"{path.name}, cell {k}: a {kb:.0f} KB PNG; store photographs as JPEG"
