"""Every output is written whole or not at all (scorelm.files), read back from disk."""
from __future__ import annotations

import pytest

from scorelm import files
from scorelm.cli import UserError


def test_a_file_is_renamed_into_place_only_when_whole(tmp_path):
    target = tmp_path / "out" / "piece.musicxml"
    files.write_text(target, "new")
    assert target.read_text() == "new" and sorted(p.name for p in target.parent.iterdir()) == ["piece.musicxml"]
    with pytest.raises(KeyboardInterrupt):  # interrupted while writing: the old file stays as it was
        with files.replacing(target) as temporary:
            temporary.write_text("half")
            assert temporary.suffix == ".musicxml" and temporary.parent == target.parent
            raise KeyboardInterrupt
    assert target.read_text() == "new" and sorted(p.name for p in target.parent.iterdir()) == ["piece.musicxml"]


def test_an_os_error_is_one_line_naming_the_path(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UserError, match="cannot write .*a_file/x.txt"):
        files.write_text(tmp_path / "a_file" / "x.txt", "text")


def test_what_a_stopped_writer_left_is_removed(tmp_path):
    left = [tmp_path / ".sample-1.partial-123.png", tmp_path / ".sample-1-2.partial-123.png",
            tmp_path / ".sample-1.partial-9.mid"]
    for path in left:
        path.write_bytes(b"x")
    (tmp_path / "sample-1.png").write_bytes(b"whole")
    files.remove_partial([tmp_path / "sample-1.png", tmp_path / "sample-1.mid"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample-1.png"]
