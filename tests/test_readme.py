"""The README stays true: its configuration table is the settings, its Quickstart two commands."""

import re
from pathlib import Path

from service.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_configuration_table_matches_settings() -> None:
    text = README.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(CAREPLAN_[A-Z_]+)` \|", text, flags=re.MULTILINE))
    expected = {f"CAREPLAN_{name.upper()}" for name in Settings.model_fields}
    assert documented == expected


def test_quickstart_has_exactly_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    quickstart = text.split("## Quickstart", 1)[1].split("##", 1)[0]
    block = quickstart.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.strip()]
    assert [c.split("#")[0].strip() for c in commands] == [
        "python3 dev.py serve",
        "python3 dev.py test",
    ]
