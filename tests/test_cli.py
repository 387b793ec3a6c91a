"""`interp memorized` end to end, and user errors: one line, exit code 2, no traceback."""

from __future__ import annotations

import json

import pytest

from interp.cli import main


def test_memorized_json_on_testbed(tmp_path, capsys, testbed, testbed_paragraph_set):
    from interp import score_paragraphs

    sub = testbed_paragraph_set.select(range(0, len(testbed_paragraph_set), 20))
    f = tmp_path / "p.jsonl"
    sub.save_jsonl(f)
    out = tmp_path / "r.json"
    assert main(["memorized", "--model", "testbed", "--device", "cpu", "--paragraphs", str(f), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "EM histogram" in printed and "repeat count" in printed
    result = json.loads(out.read_text())
    assert set(result) == {
        "model",
        "prefix_len",
        "continuation_len",
        "sampling",
        "extraction_by_em_bin",
        "paragraphs",
        "mem_ids",
        "nmem_ids",
    }
    assert "log10 p by EM bin" in printed and sum(r["n"] for r in result["extraction_by_em_bin"]) == len(sub)
    assert result["prefix_len"] == 50 and result["continuation_len"] == 50
    scores = score_paragraphs(testbed, sub)
    em = scores.em.tolist()
    assert [r["em"] for r in result["paragraphs"]] == em
    assert [r["log10_p"] for r in result["paragraphs"]] == pytest.approx(scores.log10_p.tolist(), abs=1e-9)
    assert [r["count"] for r in result["paragraphs"]] == list(sub.counts)
    assert result["mem_ids"] == [pid for pid, e in zip(sub.ids, em) if e == 50]
    assert result["nmem_ids"] == [pid for pid, e in zip(sub.ids, em) if e <= 10]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["memorized", "--model", "not-a-model-anywhere"], "testbed"),
        (["memorized", "--model", "testbed", "--paragraphs", "/no/file.jsonl"], "does not exist"),
        (["memorized", "--model", "testbed", "--device", "cuda:3"], "CUDA"),
        (["memorized", "--model", "testbed", "--dtype", "float8"], "dtype"),
        (
            [
                "memorized",
                "--model",
                "testbed",
                "--paragraphs",
                "CONTEXT",
                "--prefix-len",
                "200",
                "--continuation-len",
                "100",
            ],
            "context",
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, message, capsys, tmp_path):
    if "CONTEXT" in argv:  # paragraphs longer than the model's context: a text file with no declared lengths
        path = tmp_path / "long.jsonl"
        path.write_text('{"text": "' + "x = 1 " * 400 + '"}\n')
        argv = [str(path) if a == "CONTEXT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_malformed_line_is_named(tmp_path, capsys):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"tokens": [1]}\n{oops\n')
    assert main(["memorized", "--model", "testbed", "--paragraphs", str(f)]) == 2
    assert "line 2" in capsys.readouterr().err


def test_json_output_not_written_on_error(tmp_path, capsys):
    out = tmp_path / "keep.json"
    out.write_text('{"kept": true}')
    assert (
        main(["memorized", "--model", "testbed", "--paragraphs", str(tmp_path / "none.jsonl"), "--json", str(out)]) == 2
    )
    assert json.loads(out.read_text()) == {"kept": True}


@pytest.mark.parametrize("command", [["grad-map", "--no-per-paragraph"], ["perturb", "--samples", "1"]])
@pytest.mark.slow
def test_commands_draw_nmem_from_trained_text_only(command, tmp_path, testbed_paragraph_set):
    """Every command picks MEM / NMEM with the report's selection: never-trained ('heldout') text is no NMEM."""
    splits = testbed_paragraph_set.meta["split"]
    pick = lambda split, n: [i for i, s in enumerate(splits) if s == split][:n]  # noqa: E731
    sub = testbed_paragraph_set.select(pick("planted", 2) + pick("heldout", 6) + pick("once", 6))
    f = tmp_path / "p.jsonl"
    sub.save_jsonl(f)
    out = tmp_path / "out.json"
    assert main([*command, "--model", "testbed", "--paragraphs", str(f), "--set-size", "4", "--json", str(out)]) == 0
    nmem_ids = json.loads(out.read_text())["nmem_ids"]
    heldout = {pid for pid, s in zip(sub.ids, sub.meta["split"]) if s == "heldout"}
    assert nmem_ids and not heldout & set(nmem_ids)
