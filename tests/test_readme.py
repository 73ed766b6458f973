"""The README's quickstart runs as written (with its own small settings)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_quickstart_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python block"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], "README quickstart", "exec"), namespace)
    report = namespace["report"]
    assert (tmp_path / "my_report" / "index.html").exists() and report.name == "my_report"
    fits = namespace["fits"]
    slope = fits[0].samples["slope"].mean()
    assert abs(slope - 2.0) < 0.3  # 50 points with noise 0.3: the slope's posterior sd is ~0.07
    assert os.path.exists(tmp_path / "my_report" / "metrics.csv")
