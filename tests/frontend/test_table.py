"""The README's table of MLX functions inside kernels is the generated one (registry + library)."""
from pathlib import Path

from zmlx_dsl.frontend import table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_is_in_sync():
    text = README.read_text()
    assert table.BEGIN in text and table.END in text
    assert table.replace_section(text) == text, \
        "README.md's function table is stale: run `python -m zmlx_dsl.frontend.table --write README.md`"


def test_every_row_names_a_spelling_and_says_what_it_does():
    rows = [line for line in table.markdown().splitlines() if line.startswith("| `")]
    assert len(rows) > 60
    assert all(line.split(" | ")[-1].strip(" |") for line in rows)
    assert any(line.startswith("| `mx.exp`, `math.exp`, `np.exp` |") for line in rows)
    assert any(line.startswith("| `mx.softmax` |") for line in rows)


def test_main_prints_and_writes(tmp_path, capsys):
    assert table.main([]) == 0
    assert capsys.readouterr().out == table.markdown() + "\n"
    path = tmp_path / "R.md"
    path.write_text(f"before\n{table.BEGIN}\nold\n{table.END}\nafter\n")
    assert table.main(["--write", str(path)]) == 0
    assert path.read_text() == f"before\n{table.markdown()}\nafter\n"
    assert table.main(["--bogus"]) == 2
