"""Entry files and internal.json in the discovery-client's formats (upstream's parser rules)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from lightos_driver.entries import (Entry, EntryFormatError, parse_text, read_dir, read_internal,
                                    write_entry_file, write_internal)

NQN = "nqn.2016-01.com.lightbitslabs:uuid:abc"
HOST = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555"


def test_short_and_long_flags_comments_and_equals():
    text = f"""# a comment line
-t tcp -a 10.0.0.1 -s 8009 -q {HOST} -n {NQN}   # trailing comment
--transport=tcp --traddr=10.0.0.2 --trsvcid=8009 --hostnqn={HOST} --subsysnqn={NQN} -p -l -1
--traddr 10.0.0.3 -t tcp -s 8009 --hostnqn {HOST} -I aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee -n {NQN}

"""
    es = parse_text(text, "v.conf")
    assert [e.traddr for e in es] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert es[1].persistent and es[1].ctrl_loss_tmo == -1
    assert es[2].hostid == "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
    assert all(e.trsvcid == 8009 and e.subsysnqn == NQN and e.file == "v.conf" for e in es)


@pytest.mark.parametrize("line", [
    f"-t tcp -a 10.0.0.1 -s 8009 -q {HOST} -n {NQN} --bogus",
    f"-t rdma -a 10.0.0.1 -s 8009 -q {HOST} -n {NQN}",
    f"-t tcp -a 10.0.0.1 -s eighty -q {HOST} -n {NQN}",
    f"-t tcp -a bad_host! -s 8009 -q {HOST} -n {NQN}",
    f"-t tcp -a 10.0.0.1 -s 8009 -q {HOST} -n",
])
def test_bad_flag_or_value_rejects_the_whole_file(line):
    good = f"-t tcp -a 10.0.0.9 -s 8009 -q {HOST} -n {NQN}\n"
    with pytest.raises(EntryFormatError):
        parse_text(good + line + "\n", "x.conf")


def test_incomplete_entries_are_skipped_and_duplicates_dropped(caplog):
    text = (f"-t tcp -a 10.0.0.1 -s 8009 -q {HOST}\n"             # no subsysnqn
            f"-t tcp -a 10.0.0.2 -s 8009 -n {NQN}\n"              # no hostnqn
            f"-t tcp -a 10.0.0.3 -s 8009 -q {HOST} -n {NQN}\n"
            f"-a 10.0.0.3 -t tcp -s 8009 -q {HOST} -n {NQN}\n")   # the same endpoint
    es = parse_text(text)
    assert [e.traddr for e in es] == ["10.0.0.3"]
    assert "mandatory" in caplog.text


def test_line_round_trip():
    e = Entry("10.0.0.1", 8009, NQN, HOST, hostid="x", persistent=True, ctrl_loss_tmo=30)
    (back,) = parse_text(e.line())
    assert back == e


def test_read_dir_ignores_temp_and_hidden_files_and_reports_rejects(tmp_path):
    write_entry_file(tmp_path, "a.conf", [Entry("10.0.0.1", 8009, NQN, HOST)])
    (tmp_path / "tmp.dc.12345").write_text(f"-t tcp -a 10.0.0.2 -s 8009 -q {HOST} -n {NQN}\n")
    (tmp_path / ".swp").write_text("garbage")
    (tmp_path / "bad.conf").write_text("-x y\n")
    files, errors = read_dir(tmp_path)
    assert list(files) == ["a.conf"] and files["a.conf"][0].traddr == "10.0.0.1"
    assert list(errors) == ["bad.conf"]


def test_internal_json_in_upstream_format(tmp_path):
    p = tmp_path / "internal.json"
    e = Entry("10.0.0.1", 8009, NQN, HOST, persistent=True, source="referral", file="v.conf")
    write_internal(p, [e])
    raw = json.loads(p.read_text())
    assert set(raw) == {"entries", "creation_time"}
    (d,) = raw["entries"]
    assert {k: d[k] for k in ("Transport", "Trsvcid", "Traddr", "Hostnqn", "Subsysnqn",
                              "Persistent", "EntrySource")} == {
        "Transport": "tcp", "Trsvcid": 8009, "Traddr": "10.0.0.1", "Hostnqn": HOST,
        "Subsysnqn": NQN, "Persistent": True, "EntrySource": "referral"}
    state = read_internal(p)
    assert state.entries == [e] and state.entries[0].file == "v.conf"
    assert (datetime.now(timezone.utc) - state.creation_time).total_seconds() < 60
    assert [n for n in p.parent.iterdir()] == [p]  # the temp file was renamed away


def test_internal_json_written_by_go_is_read(tmp_path):
    p = tmp_path / "internal.json"
    p.write_text(json.dumps({"entries": [{
        "Transport": "tcp", "Trsvcid": 8009, "Traddr": "10.0.0.7", "Hostnqn": HOST, "Hostid": "",
        "Subsysnqn": NQN, "Persistent": True, "Hostaddr": "", "EntrySource": "user",
        "CtrlLossTMO": None}], "creation_time": "2024-03-01T10:00:00.123456789+02:00"}))
    state = read_internal(p)
    assert state.entries[0].traddr == "10.0.0.7" and state.entries[0].file == ""
    assert state.creation_time.utcoffset().total_seconds() == 7200


def test_unreadable_internal_json_is_ignored(tmp_path):
    p = tmp_path / "internal.json"
    assert read_internal(p) is None
    p.write_text("{not json")
    assert read_internal(p) is None
