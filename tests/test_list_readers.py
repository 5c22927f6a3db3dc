"""Issue 17: every line-oriented list reader shares one line-length bound
(noisylabels.fileio.MAX_TEXT_LINE_BYTES, read through fileio.iter_text_lines), so a huge
line is refused after reading no more than the bound; and an image list's duplicate key is
refused by the first tool that reads the list (util/extract_features.py), naming both lines."""

import os
import tracemalloc

import pytest

from cleannet import image_list, tsv_reader
from noisylabels.errors import InputError
from noisylabels.fileio import MAX_TEXT_LINE_BYTES

HUGE = 40 * MAX_TEXT_LINE_BYTES  # a 40 MiB line


def write_with_huge_line(path, before):
    with open(path, "wb") as f:
        f.write(before.encode())
        f.write(b"x" * HUGE + b"\n")


def peak_bytes(function):
    tracemalloc.start()
    try:
        function()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("reader, before", [
    (lambda p: list(image_list.iter_list_rows(p)), "k1\ta.png\tcat\n"),
    (tsv_reader.read_class_list, "cat\ndog\n"),
], ids=["image_list", "class_list"])
def test_a_huge_line_is_refused_after_reading_no_more_than_the_bound(tmp_path, reader, before):
    path = str(tmp_path / "list.txt")
    write_with_huge_line(path, before)
    errors = []

    def read():
        try:
            reader(path)
        except InputError as err:
            errors.append(str(err))

    peak = peak_bytes(read)
    line = before.count("\n") + 1
    assert errors == ["%s:%d: line longer than %d bytes, more than a valid line can be" % (path, line,
                                                                                           MAX_TEXT_LINE_BYTES)]
    assert peak < 4 * MAX_TEXT_LINE_BYTES, peak  # not the 40 MiB line (the class list read it whole)


def test_class_list_still_reads_bom_crlf_and_trailing_blank_lines(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_bytes(b"\xef\xbb\xbfcat\r\ndog\r\n\r\n  \n")
    assert tsv_reader.read_class_list(str(path)) == ["cat", "dog"]
    path.write_bytes(b"cat\n\ndog\n")
    with pytest.raises(InputError, match=r"classes.txt:2: class_name: empty class name"):
        tsv_reader.read_class_list(str(path))


def test_duplicate_image_list_key_is_refused_naming_both_lines(tmp_path):
    path = tmp_path / "list.tsv"
    path.write_text("k1\ta.png\tcat\nk2\tb.png\tdog\n\nk1\tc.png\tcat\n")
    assert [r.key for r in image_list.iter_list_rows(str(path))] == ["k1", "k2", "k1"]  # later readers: no check
    with pytest.raises(InputError) as err:
        list(image_list.iter_list_rows(str(path), unique_keys=True))
    assert str(err.value) == ("%s:4: key: duplicate key 'k1' (first on line 1); every key of a list must be unique"
                              % path)


def test_extraction_refuses_a_duplicate_key_before_loading_a_model(tmp_path):
    from cleannet.tools.extract_features import extract

    (tmp_path / "images").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "images" / name).write_bytes(b"not read")
    listing = tmp_path / "list.tsv"
    listing.write_text("k1\ta.png\tcat\nk1\tb.png\tcat\n")
    with pytest.raises(InputError, match=r"list.tsv:2: key: duplicate key 'k1' \(first on line 1\)"):
        extract(str(listing), str(tmp_path / "out.tsv"), weights=None, image_root=str(tmp_path / "images"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "list.tsv"]


def test_all_samples_tsv_duplicate_key_is_refused_by_its_first_reader(tmp_path):
    """The all-samples TSV's keys are joined on later (make_cleaned_list, the review page,
    merge_queue): convert_data --split=all, its first reader, refuses a duplicate naming
    both lines, across chunks too; a verified TSV may repeat a key (not joined on)."""
    import subprocess
    import sys

    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ndog\n")
    rows = ["k%d\t%s\t%d,1,2\n" % (i, "cat" if i % 2 else "dog", i) for i in range(5)] + ["k1\tdog\t9,9,9\n"]
    all_tsv = tmp_path / "all.tsv"
    all_tsv.write_text("".join(rows))
    with pytest.raises(InputError) as err:
        for _ in tsv_reader.iter_tsv_chunks(str(all_tsv), "all", {"cat": 0, "dog": 1}, chunk_rows=2):
            pass
    assert str(err.value) == "%s:6: key: duplicate key 'k1' (first on line 2); every key of a list must be unique" % all_tsv
    verified = tmp_path / "train.tsv"
    verified.write_text("k1\tcat\t1\t1,2,3\nk1\tdog\t0\t1,2,3\n")
    chunks = list(tsv_reader.iter_tsv_chunks(str(verified), "verified", {"cat": 0, "dog": 1}))
    assert chunks[0].keys == ["k1", "k1"]
    out = tmp_path / "data"
    proc = subprocess.run([sys.executable, "util/convert_data.py", "--split=all", "--class_list=%s" % classes,
                           "--data_path=%s" % all_tsv, "--output_dir=%s" % out], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith("all.tsv:6: key: duplicate key 'k1' (first on line 2); "
                                                         "every key of a list must be unique")
    assert not out.exists()
