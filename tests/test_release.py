"""Every place that names the released checkpoint names the same one: chapter 7 (which chooses it and writes the
model card), the README's predict example, the speed benchmark's default and its stored result (chapter 9)."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _chapter7_release() -> str:
    """The checkpoint chapter 7's executed full-profile run glued as ``card_checkpoint`` (the model card's)."""
    nb = json.loads((ROOT / "notebooks/07_final_model.ipynb").read_text())
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out.get("metadata", {}).get("scrapbook", {}).get("name") == "card_checkpoint":
                return out["data"]["application/papermill.record/text/plain"]
    raise AssertionError("chapter 7 has no stored card_checkpoint output; execute it in the full profile")


def test_the_released_checkpoint_is_named_the_same_everywhere():
    release = _chapter7_release()
    assert release.startswith("results/checkpoints/") and (ROOT / release).is_file(), release
    readme = (ROOT / "README.md").read_text()
    assert f"predict --checkpoint {release} " in readme
    benchmark = (ROOT / "benchmarks/infer_speed.py").read_text()
    assert re.search(rf'^DEFAULT_CHECKPOINT = "{re.escape(release)}"', benchmark, re.M)
    stored = json.loads((ROOT / "benchmarks/results/infer_speed.json").read_text())
    assert stored["checkpoint"] == release, "rerun python benchmarks/infer_speed.py for the released checkpoint"
