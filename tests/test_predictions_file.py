"""Reading predictions files: every malformed input is one PredictionsError naming file and line.

A table of malformed files (bytes as written to disk) with the reason and the line each must be
reported at; acceptable oddities (empty file, BOM, CR line ends ...) with the dict they give;
then the line-length cap, read in bounded memory.
"""

import json
import tracemalloc

import pytest

from finer_datasets.errors import PredictionsError
from finer_datasets.eval.predictions import MAX_LINE_BYTES, load_predictions


def line(qid="q1_pos", response="B", **extra) -> bytes:
    return json.dumps({"question_id": qid, "response": response, **extra}).encode() + b"\n"


GOOD = line("q0_pos", "A")
HUGE = b'{"question_id": "big", "response": "' + b"x" * (MAX_LINE_BYTES + 10) + b'"}\n'
LATIN1 = '{"question_id": "q1_pos", "response": "café"}\n'.encode("latin-1")

# (name, file bytes, reason in the message, line it is reported at or None)
MALFORMED = [
    ("not json", GOOD + b"hello world\n", "not valid JSON (Expecting value at column 1)", 2),
    ("json array", b'["q1_pos", "B"]\n', "expected a JSON object, got list", 1),
    ("json string", b'"B"\n', "expected a JSON object, got str", 1),
    ("json number", b"3\n", "expected a JSON object, got int", 1),
    ("json null", b"null\n", "expected a JSON object, got null", 1),
    ("null id", b'{"question_id": null, "response": "B"}\n', "'question_id' must be a string, got null", 1),
    ("int id", line(3), "'question_id' must be a string, got int", 1),
    ("float id", GOOD + line(1.5), "'question_id' must be a string, got float", 2),
    ("NaN id", b'{"question_id": NaN, "response": "B"}\n', "'question_id' must be a string, got float", 1),
    ("bool response", line(response=True), "'response' must be a string, got bool", 1),
    ("list response", line(response=["B"]), "'response' must be a string, got list", 1),
    ("object response", line(response={"text": "B"}), "'response' must be a string, got dict", 1),
    ("null response", line(response=None), "'response' must be a string, got null", 1),
    ("empty id", GOOD + line(""), "'question_id' is empty", 2),
    ("missing id", b'{"response": "B"}\n', "missing key 'question_id'", 1),
    ("missing response", b'{"question_id": "q1_pos"}\n', "missing key 'response'", 1),
    ("empty object", b"{}\n", "missing key 'question_id'", 1),
    ("repeated key", b'{"question_id": "a", "question_id": "b", "response": "B"}\n',
     "key 'question_id' given more than once", 1),
    ("NUL byte", GOOD + line()[:-1] + b"\x00\n", f"NUL character at column {len(line())}", 2),
    ("NUL in a string", b'{"question_id": "q\x00", "response": "B"}\n', "NUL character at column 19", 1),
    ("truncated last line", GOOD + b'{"question_id": "q1_pos", "resp', "not valid JSON", 2),
    ("trailing comma", b'{"question_id": "q1_pos", "response": "B",}\n', "not valid JSON", 1),
    ("two objects on a line", line()[:-1] + line("q2_pos"), "not valid JSON (Extra data", 1),
    ("python repr", b"{'question_id': 'q1_pos', 'response': 'B'}\n", "not valid JSON", 1),
    ("latin-1 bytes", GOOD + GOOD.replace(b"q0", b"q9") + LATIN1, f"not UTF-8 text at byte offset {2 * len(GOOD) + 42} "
     "(byte 0xe9)", 3),
    ("UTF-16 with BOM", line().decode().encode("utf-16"), "not UTF-8 text at byte offset 0 (a UTF-16 byte-order mark)", 1),
    ("UTF-16 without BOM", line().decode().encode("utf-16-le"), "NUL character at column 2", 1),
    ("truncated UTF-8 sequence", GOOD + b'{"question_id": "q1_pos", "response": "\xe2\x82', "not UTF-8 text at byte "
     f"offset {len(GOOD) + 39}", 2),
    ("overlong UTF-8", b'{"question_id": "\xc0\xaf", "response": "B"}\n', "not UTF-8 text at byte offset 17 (byte 0xc0)", 1),
    ("UTF-8 surrogate", b'{"question_id": "\xed\xa0\x80", "response": "B"}\n', "not UTF-8 text at byte offset 17", 1),
    ("BOM on a later line", GOOD + b"\xef\xbb\xbf" + line(), "not valid JSON (Unexpected UTF-8 BOM", 2),
    ("BOM then garbage", b"\xef\xbb\xbfnot json\n", "not valid JSON (Expecting value at column 1)", 1),
    ("huge line", HUGE, f"line longer than the limit of {MAX_LINE_BYTES} bytes", 1),
    ("huge second line", GOOD + HUGE + GOOD, f"line longer than the limit of {MAX_LINE_BYTES} bytes", 2),
    ("huge line without end", GOOD + HUGE[:-1], f"line longer than the limit of {MAX_LINE_BYTES} bytes", 2),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000 + b"\n", "not valid JSON (nested too deeply)", 1),
    ("giant integer", b'{"question_id": "q", "response": "B", "n": ' + b"1" * 5000 + b"}\n",
     "not valid JSON (Exceeds the limit (4300 digits) for integer string conversion)", 1),
    ("blank lines count", b"\n\n   \n" + b"oops\n", "not valid JSON", 4),
    ("CR line ends count", GOOD[:-1] + b"\r" + GOOD.replace(b"q0", b"q8")[:-1] + b"\r{bad\r", "not valid JSON", 3),
    ("CRLF line ends count", GOOD[:-1] + b"\r\n\r\n" + b"{bad\r\n", "not valid JSON", 3),
    ("duplicate ids", GOOD + line() + GOOD, "1 duplicate question id(s): 'q0_pos' on lines 1, 3", None),
]


def test_the_table_is_large_and_has_distinct_cases():
    assert len(MALFORMED) >= 30
    assert len({name for name, *_ in MALFORMED}) == len(MALFORMED)


@pytest.mark.parametrize("name,data,reason,number", MALFORMED, ids=[case[0] for case in MALFORMED])
def test_malformed_predictions_name_file_and_line(tmp_path, name, data, reason, number):
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(data)
    with pytest.raises(PredictionsError) as info:
        load_predictions(path)
    error = info.value
    where = f"file {path}, line {number}: " if number is not None else f"file {path}: "
    assert str(error).startswith(where), str(error)
    assert reason in str(error), str(error)
    assert error.path == str(path) and error.line == number and error.exit_code == 2
    assert "\n" not in str(error) and len(str(error)) < 400  # one readable line, never the bad line itself


def test_a_directory_or_a_missing_file(tmp_path):
    for path, reason in ((tmp_path, "Is a directory"), (tmp_path / "absent.jsonl", "No such file or directory")):
        with pytest.raises(PredictionsError) as info:
            load_predictions(path)
        assert str(info.value) == f"file {path}: cannot read predictions: {reason}"
        assert info.value.line is None


ACCEPTED = [
    ("empty file", b"", {}),
    ("only blank lines", b"\n \n\t\r\n", {}),
    ("UTF-8 BOM", b"\xef\xbb\xbf" + GOOD, {"q0_pos": "A"}),
    ("CRLF line ends", GOOD[:-1] + b"\r\n" + line()[:-1] + b"\r\n", {"q0_pos": "A", "q1_pos": "B"}),
    ("CR line ends", GOOD[:-1] + b"\r" + line()[:-1] + b"\r", {"q0_pos": "A", "q1_pos": "B"}),
    ("no final line end", GOOD + line()[:-1], {"q0_pos": "A", "q1_pos": "B"}),
    ("extra keys", line(model="m", probs=[0.2] * 5, score=float("nan")).replace(b"NaN", b"NaN"), {"q1_pos": "B"}),
    ("escaped NUL in a response", b'{"question_id": "q", "response": "B\\u0000"}\n', {"q": "B\x00"}),
    ("non-ASCII text", line(response="Réponse : B 🐈"), {"q1_pos": "Réponse : B 🐈"}),
    ("escaped non-ASCII", line(response="é"), {"q1_pos": "é"}),
    ("a long but legal line", line(response="x" * (MAX_LINE_BYTES - 100)), {"q1_pos": "x" * (MAX_LINE_BYTES - 100)}),
]


@pytest.mark.parametrize("name,data,expected", ACCEPTED, ids=[case[0] for case in ACCEPTED])
def test_acceptable_predictions_files(tmp_path, name, data, expected):
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(data)
    assert load_predictions(path) == expected


def test_line_limit_boundary(tmp_path):
    path = tmp_path / "predictions.jsonl"
    exact = line("q", "x" * 30)[:-1]
    path.write_bytes(exact + b"\n" + exact + b"x\n")
    with pytest.raises(PredictionsError, match=rf"line 2: line longer than the limit of {len(exact)} bytes"):
        load_predictions(path, max_line_bytes=len(exact))
    path.write_bytes(exact + b"\n")
    assert load_predictions(path, max_line_bytes=len(exact)) == {"q": "x" * 30}


def test_crlf_split_across_reads_is_one_line_end(tmp_path):
    # the "\r" of a "\r\n" is the last byte of the first 64 KiB read, the "\n" the first of the next
    first = line("q0", "A" * (65535 - len(line("q0", "")[:-1])))[:-1] + b"\r\n"
    assert len(first) == 65536 + 1 and first[65535:65537] == b"\r\n"
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(first + b"bad\r\n")
    with pytest.raises(PredictionsError) as info:
        load_predictions(path)
    assert info.value.line == 2


def test_memory_stays_bounded_for_a_huge_line(tmp_path):
    path = tmp_path / "predictions.jsonl"
    with path.open("wb") as f:
        f.write(GOOD)
        f.write(b'{"question_id": "big", "response": "')
        for _ in range(8):
            f.write(b"x" * (1 << 20))  # an 8 MiB second line
        f.write(b'"}\n')
    tracemalloc.start()
    try:
        with pytest.raises(PredictionsError, match="line 2: line longer than the limit"):
            load_predictions(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_LINE_BYTES, peak  # reading the whole line would take over 8 MiB
