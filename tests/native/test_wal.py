"""Write-ahead log on real files: appends, reads, truncation, release, recovery."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raftkv._native import (
    ENTRY_OVERHEAD,
    Wal,
    WalClosedError,
    WalCorruptError,
    decode_entries,
)
from tests.native.helpers import batch, payload

SMALL_SEGMENT = 16 * 1024


def indexes(data: bytes) -> list[int]:
    return [e[0] for e in decode_entries(data)]


def segment_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.wal"))


def test_append_read_and_reopen(tmp_path: Path) -> None:
    with Wal(tmp_path, SMALL_SEGMENT) as wal:
        seq = 0
        for lo in range(1, 1001, 50):
            seq = wal.append(batch(lo, lo + 50), hard_state=(3, 1, lo))
        wal.wait(seq)
        assert wal.synced_seq == seq
        assert len(segment_files(tmp_path)) > 1, "small segments rotate"
        got = decode_entries(wal.read(1, 1001))
        assert [e[0] for e in got] == list(range(1, 1001))
        assert all(e[3] == payload(e[0]) for e in got)
    with Wal(tmp_path, SMALL_SEGMENT) as wal:
        assert (wal.first_index, wal.last_index) == (1, 1000)
        assert wal.hard_state == (3, 1, 951)
        assert wal.recovery()["entries"] == 1000
        assert wal.recovery()["torn_bytes"] == 0
        assert indexes(wal.read(500, 510)) == list(range(500, 510))
        assert wal.term(1000) == 1


def test_read_byte_limit_returns_at_least_one_entry(tmp_path: Path) -> None:
    with Wal(tmp_path) as wal:
        wal.append(batch(1, 21))
        one = ENTRY_OVERHEAD + 64
        assert indexes(wal.read(1, 21, max_bytes=1)) == [1]
        assert indexes(wal.read(1, 21, max_bytes=one * 5)) == [1, 2, 3, 4, 5]
        with pytest.raises(ValueError, match="outside the log"):
            wal.read(15, 30)


def test_conflicting_append_replaces_suffix(tmp_path: Path) -> None:
    with Wal(tmp_path) as wal:
        wal.append(batch(1, 11, term=1))
        wal.append(batch(7, 9, term=2))
        assert wal.last_index == 8
        with pytest.raises(ValueError, match="gap"):
            wal.append(batch(10, 11, term=2))
        wal.wait(wal.truncate_suffix(8))
        assert [wal.term(i) for i in range(5, 8)] == [1, 1, 2]
    with Wal(tmp_path) as wal:
        assert wal.last_index == 7
        assert [wal.term(i) for i in range(5, 8)] == [1, 1, 2]


def test_release_deletes_segments_wholly_before(tmp_path: Path) -> None:
    with Wal(tmp_path, SMALL_SEGMENT) as wal:
        for lo in range(1, 2001, 100):
            wal.append(batch(lo, lo + 100))
        wal.wait(wal.save_hard_state(2, 1, 1900))
        before = len(segment_files(tmp_path))
        wal.wait(wal.release_before(1500))
        after = len(segment_files(tmp_path))
        assert after < before
        assert wal.stats()["segments_released"] == before - after
        assert wal.first_index == 1500
        with pytest.raises(ValueError, match="outside the log"):
            wal.read(1499, 1501)
        # Every entry from the release point on is still readable.
        assert indexes(wal.read(1500, 2001)) == list(range(1500, 2001))
    with Wal(tmp_path, SMALL_SEGMENT) as wal:
        assert (wal.first_index, wal.last_index) == (1500, 2000)
        assert wal.hard_state == (2, 1, 1900)
        assert indexes(wal.read(1500, 2001)) == list(range(1500, 2001))


def test_release_past_end_restarts_log_at_snapshot(tmp_path: Path) -> None:
    with Wal(tmp_path, SMALL_SEGMENT) as wal:
        wal.append(batch(1, 500))
        wal.release_before(10_000)
        with pytest.raises(ValueError, match="below the first index"):
            wal.append(batch(9_999, 10_000))
        wal.wait(wal.append(batch(10_000, 10_010)))
    with Wal(tmp_path, SMALL_SEGMENT) as wal:
        assert (wal.first_index, wal.last_index) == (10_000, 10_009)
        assert len(segment_files(tmp_path)) == 1


def _last_data_byte(path: Path) -> int:
    data = path.read_bytes()
    return len(data.rstrip(b"\0"))


def test_torn_tail_is_cut_and_reported(tmp_path: Path) -> None:
    with Wal(tmp_path) as wal:
        wal.wait(wal.append(batch(1, 31)))
    seg = segment_files(tmp_path)[-1]
    end = _last_data_byte(seg)
    # The last record's final bytes never reached the disk.
    with seg.open("r+b") as f:
        f.seek(end - 10)
        f.write(b"\0" * 10)
    with Wal(tmp_path) as wal:
        report = wal.recovery()
        assert report["torn_bytes"] > 0
        assert report["torn_at"] is not None
        assert wal.last_index == 29
        assert indexes(wal.read(1, 30)) == list(range(1, 30))
        wal.wait(wal.append(batch(30, 41)))
    with Wal(tmp_path) as wal:
        assert wal.recovery()["torn_bytes"] == 0
        assert indexes(wal.read(1, 41)) == list(range(1, 41))


def test_truncated_file_is_a_torn_tail(tmp_path: Path) -> None:
    with Wal(tmp_path) as wal:
        wal.wait(wal.append(batch(1, 11)))
    seg = segment_files(tmp_path)[-1]
    os.truncate(seg, _last_data_byte(seg) - 3)
    with Wal(tmp_path) as wal:
        assert wal.last_index == 9
        assert wal.recovery()["torn_bytes"] > 0


def test_garbage_after_the_last_record_is_cut(tmp_path: Path) -> None:
    with Wal(tmp_path) as wal:
        wal.wait(wal.append(batch(1, 11)))
    seg = segment_files(tmp_path)[-1]
    end = _last_data_byte(seg)
    with seg.open("r+b") as f:
        f.seek(end)
        f.write(b"\x37" * 100)
    with Wal(tmp_path) as wal:
        assert wal.last_index == 10
        assert wal.recovery()["torn_bytes"] == 100


@pytest.mark.parametrize("where", ["first_record", "middle_record"])
def test_flipped_byte_followed_by_valid_records_is_refused(tmp_path: Path, where: str) -> None:
    with Wal(tmp_path) as wal:
        wal.wait(wal.append(batch(1, 101)))
    seg = segment_files(tmp_path)[-1]
    data = bytearray(seg.read_bytes())
    record = ENTRY_OVERHEAD + 64
    header = 26 + 56
    at = header + 20 if where == "first_record" else header + 50 * record + 40
    data[at] ^= 0x20
    seg.write_bytes(bytes(data))
    with pytest.raises(WalCorruptError, match="followed by a valid record"):
        Wal(tmp_path)


def test_damage_in_an_older_segment_is_refused(tmp_path: Path) -> None:
    with Wal(tmp_path, SMALL_SEGMENT) as wal:
        for lo in range(1, 1001, 100):
            wal.append(batch(lo, lo + 100))
    first = segment_files(tmp_path)[0]
    data = bytearray(first.read_bytes())
    end = len(bytes(data).rstrip(b"\0"))
    data[end - 5] ^= 0xFF  # the last record of a segment that others follow
    first.write_bytes(bytes(data))
    with pytest.raises(WalCorruptError):
        Wal(tmp_path)


def test_leftover_temporary_segment_is_removed(tmp_path: Path) -> None:
    with Wal(tmp_path) as wal:
        wal.wait(wal.append(batch(1, 5)))
    (tmp_path / "0000000000000002.wal.tmp").write_bytes(b"\0" * 4096)
    with Wal(tmp_path) as wal:
        assert wal.recovery()["removed_temp_files"] == 1
        assert wal.last_index == 4


def test_suspended_writer_groups_all_queued_batches_into_one_sync(tmp_path: Path) -> None:
    with Wal(tmp_path) as wal:
        wal.suspend_writer()
        seqs = [wal.append(batch(i, i + 1)) for i in range(1, 257)]
        assert wal.synced_seq == 0, "nothing is durable before the writer runs"
        wal.resume_writer()
        wal.wait(seqs[-1])
        stats = wal.stats()
        assert (stats["batches"], stats["syncs"]) == (256, 1)
        assert stats["batches_per_sync"] == 256.0


def test_closed_log_refuses_appends(tmp_path: Path) -> None:
    wal = Wal(tmp_path)
    seq = wal.append(batch(1, 3))
    wal.close()
    assert wal.synced_seq == seq, "close writes out what was queued"
    with pytest.raises(WalClosedError):
        wal.append(batch(3, 4))
    wal.close()


def test_invalid_bytes_are_refused_before_queueing(tmp_path: Path) -> None:
    with Wal(tmp_path) as wal:
        good = batch(1, 3)
        with pytest.raises(ValueError, match="invalid entry batch"):
            wal.append(good[:-1])
        with pytest.raises(ValueError, match="invalid entry batch"):
            wal.append(b"\x01\x02\x03")
        assert wal.last_index == 0
        wal.wait(wal.append(good))
        assert wal.last_index == 2


def test_unsynced_appends_skip_the_fdatasync_until_a_synced_one(tmp_path: Path) -> None:
    with Wal(tmp_path) as wal:
        wal.wait(wal.append(batch(1, 2)))
        syncs = wal.stats()["syncs"]
        wal.wait(wal.append(b"", hard_state=(1, 0, 1), sync=False))
        assert wal.stats()["syncs"] == syncs, "a commit-only update is written, not synced"
        wal.wait(wal.append(batch(2, 3)))
        assert wal.stats()["syncs"] == syncs + 1
    with Wal(tmp_path) as wal:
        assert wal.hard_state == (1, 0, 1) and wal.last_index == 2
