"""What every hostile-input test asserts about a refused command."""
from __future__ import annotations

from facegan.cli.main import main


def refused(argv: list[str], capsys) -> str:
    """Run the CLI; it must exit 2 with exactly one `error:` line on stderr, which is returned."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]
