"""README's Python cohort example, run as the script it shows (so the README cannot rot)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from slide_fixtures import register_tiny, tissue_slide, write_slide

README = Path(__file__).resolve().parents[2] / "README.md"
README_MODEL = '"breakhis-binary@3"'


def _readme_cohort_script() -> str:
    """The README's ```python block that calls run_cohort."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    (script,) = [b for b in blocks if "run_cohort(" in b]
    return script


def _run_script(code: str, folder: Path, model_ref: str) -> subprocess.CompletedProcess:
    """``code`` as ``folder/cohort_run.py`` (the README's model name replaced by the tiny
    model's), run there with this interpreter, as ``python cohort_run.py``."""
    assert README_MODEL in code
    script = folder / "cohort_run.py"
    script.write_text(code.replace(README_MODEL, repr(model_ref)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, script.name], cwd=folder, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


@pytest.fixture
def cohort_folder(registry, tmp_path) -> tuple[Path, str]:
    """A folder holding ``slides/`` (two small slides) and the tiny model's ref."""
    for i in range(2):
        write_slide(tmp_path / "slides" / f"s{i}.tif", tissue_slide(256, 384, seed=i))
    return tmp_path, register_tiny(registry)


def test_the_readme_cohort_script_runs_on_a_local_cluster(cohort_folder) -> None:
    folder, model_ref = cohort_folder
    done = _run_script(_readme_cohort_script(), folder, model_ref)
    assert done.returncode == 0, done.stderr
    assert "2 done, 0 skipped, 0 failed" in done.stdout
    assert (folder / "cohort" / "slides.csv").is_file()
    assert sorted(p.name for p in (folder / "cohort" / "slides").iterdir()) == ["s0", "s1"]


def test_the_readme_script_without_its_main_guard_stops_saying_so(cohort_folder) -> None:
    folder, model_ref = cohort_folder
    guarded = _readme_cohort_script()
    head, _, body = guarded.partition('if __name__ == "__main__":')
    unguarded = head + textwrap.dedent(body.partition("\n")[2])
    done = _run_script(unguarded, folder, model_ref)
    assert done.returncode != 0
    error = "napari_pathreview.inference.cohort.WorkersFailedToStartError: the local Dask"
    (said,) = [line for line in done.stderr.splitlines() if line.startswith(error)]
    assert 'must call it under `if __name__ == "__main__":`' in said
