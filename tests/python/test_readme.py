"""Every ```python block of README.md and docs/*.md runs as written on a CPU-only machine.

The blocks of one document run in order, in one fresh temporary folder, each in a fresh
namespace: a block must make its own imports and variables (as when pasted alone), but may
use files an earlier block of the same document wrote. A block preceded by a line
``<!-- not-run -->`` is skipped. Tracebacks point at the document's own line numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP_MARK = "<!-- not-run -->"

RUNNER = """
import json, sys
for path, first_line, code in json.load(open(sys.argv[1])):
    # Blank lines in front keep the document's line numbers in tracebacks.
    exec(compile("\\n" * (first_line - 1) + code, path, "exec"), {"__name__": "__main__"})
"""


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """(line of the block's first code line, code) for each ```python block to run."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
            assert end is not None, f"{path.name}:{i + 1}: unclosed ```python block"
            if not (i > 0 and lines[i - 1].strip() == SKIP_MARK):
                blocks.append((i + 2, "\n".join(lines[i + 1 : end]) + "\n"))
            i = end
        i += 1
    return blocks


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_block_extraction(tmp_path):
    doc = tmp_path / "d.md"
    doc.write_text(
        "text\n```python\na = 1\n```\n<!-- not-run -->\n```python\nb = 2\n```\n"
        "```bash\nls\n```\n```python\n\nc = 3\n```\n"
    )
    assert python_blocks(doc) == [(3, "a = 1\n"), (13, "\nc = 3\n")]
    assert len(python_blocks(ROOT / "README.md")) >= 3, "the README's examples were not found"


@pytest.mark.parametrize("doc", [d for d in DOCS if python_blocks(d)], ids=lambda d: d.name)
def test_examples_run_as_written(doc, tmp_path):
    blocks = [(str(doc.relative_to(ROOT)), line, code) for line, code in python_blocks(doc)]
    (tmp_path / ".blocks.json").write_text(json.dumps(blocks))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # as on a machine without a GPU
    run = subprocess.run(
        [sys.executable, "-c", RUNNER, ".blocks.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    failed = run.returncode != 0
    assert not failed, f"an example of {doc.name} failed:\n{run.stderr[-4000:]}"
