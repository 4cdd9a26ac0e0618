"""Progress bars: shown for work, silent under quiet() and when there is nothing to do."""

from __future__ import annotations

import pytest

from creaturekit.progress import quiet, track


def test_bar_only_for_work_there_is(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(track(range(3), "Counting sheep", total=3)) == [0, 1, 2]
    assert "Counting sheep" in capsys.readouterr().err
    assert list(track([], "Extracting features", total=0)) == []
    with quiet():
        assert list(track(range(2), "Counting goats", total=2)) == [0, 1]
    assert capsys.readouterr().err == ""
