"""Every setting is documented in README's configuration table (as Datasette checks its own)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from proofroom.server.settings import ENV_PREFIX, Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_has_a_row_in_the_readme() -> None:
    documented = set(re.findall(r"`(PROOFROOM_[A-Z0-9_]+)`", README.read_text()))
    names = {ENV_PREFIX + field.name.upper() for field in dataclasses.fields(Settings)}
    assert names - documented == set()
