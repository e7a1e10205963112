"""README's performance table comes from the benches' result files, on one clean commit."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_table_module():
    spec = importlib.util.spec_from_file_location("readme_table", ROOT / "bench/readme_table.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_result(where: Path, bench: str, commit: str, ok: bool) -> None:
    where.mkdir(exist_ok=True)
    (where / f"{bench}.json").write_text(json.dumps({
        "bench": bench, "command": f"python bench/{bench}.py", "commit": commit, "ok": ok,
        "rows": [{"what": f"{bench} case | piped", "result": "p99 1.0 ms", "target": "≤ 2",
                  "ok": ok}]}))


def readme(tmp_path: Path, table) -> Path:
    path = tmp_path / "README.md"
    path.write_text(f"# x\n\n{table.BEGIN}\nold figures\n{table.END}\n\ntail\n")
    return path


def test_the_table_is_written_from_the_results_of_one_commit(tmp_path):
    table = load_table_module()
    results = tmp_path / "results"
    write_result(results, "charts", "abc1234", True)
    write_result(results, "store", "abc1234", False)
    path = readme(tmp_path, table)
    assert table.main(["--results", str(results), "--readme", str(path)]) == 0
    text = path.read_text()
    assert "old figures" not in text and text.endswith("tail\n")
    assert "measured on commit `abc1234`" in text
    assert "| `python bench/charts.py` | charts case \\| piped | p99 1.0 ms | ≤ 2 | yes |" in text
    assert "| `python bench/store.py` | store case \\| piped | p99 1.0 ms | ≤ 2 | **no** |" in text
    assert table.main(["--check", "--results", str(results), "--readme", str(path)]) == 0


def test_results_from_mixed_commits_or_a_dirty_tree_are_refused(tmp_path, capsys):
    table = load_table_module()
    results = tmp_path / "results"
    write_result(results, "charts", "abc1234", True)
    write_result(results, "store", "def5678", True)
    path = readme(tmp_path, table)
    before = path.read_text()
    assert table.main(["--results", str(results), "--readme", str(path)]) == 1
    assert "different commits" in capsys.readouterr().err
    write_result(results, "store", "abc1234+dirty", True)
    assert table.main(["--results", str(results), "--readme", str(path)]) == 1
    assert path.read_text() == before
