"""Corpora: bundled prose, files, JSONL, windows labelled by document."""

from __future__ import annotations

import json

import pytest

import interp


class CharTokenizer:
    """A stand-in tokenizer (one id per character) so the window logic is testable alone."""

    bos_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [1 + (ord(c) % 200) for c in text]}


def test_bundled_corpus_is_real_prose():
    docs = interp.load_corpus()
    assert len(docs) > 50
    assert sum(len(d.text) for d in docs) > 400_000
    assert len({d.id for d in docs}) == len(docs)
    assert any("assert" in d.text for d in docs)


def test_files_folders_and_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("hello world")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("second doc")
    rows = [{"text": "one", "id": "x"}, {"text": "two"}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    docs = interp.load_corpus(tmp_path)
    assert [d.id for d in docs] == ["a.txt", "x", "c.jsonl:1", "sub/b.md"]
    assert interp.load_corpus(tmp_path / "c.jsonl")[0].text == "one"


def test_bad_corpora_name_the_fix(tmp_path):
    with pytest.raises(interp.InterpError, match="not found\n  fix: give a text file, a folder"):
        interp.load_corpus(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("   \n")
    with pytest.raises(interp.InterpError, match="holds no text\n  fix: give a corpus with at least one non-empty document"):
        interp.load_corpus(tmp_path / "empty.txt")
    (tmp_path / "d.jsonl").write_text(json.dumps({"body": "x"}))
    with pytest.raises(interp.InterpError, match="has no field 'text'.*\n  fix: pass --field NAME"):
        interp.load_corpus(tmp_path / "d.jsonl")


def test_windows_stay_inside_documents():
    docs = [interp.Document("a", "x" * 50), interp.Document("b", "y" * 25), interp.Document("c", "z" * 5)]
    ws = list(interp.windows(CharTokenizer(), docs, n_tokens=11))
    assert [(w.doc_id, w.index, w.start) for w in ws] == [
        ("a", 0, 0), ("a", 1, 10), ("a", 2, 20), ("a", 3, 30), ("a", 4, 40), ("b", 0, 0), ("b", 1, 10)
    ]
    assert all(len(w.seq) == 11 and w.seq.roles[0] == "bos" for w in ws)
    assert list(interp.windows(CharTokenizer(), docs, n_tokens=11, max_windows=2))[-1].index == 1
    with pytest.raises(interp.InterpError, match="smaller n_tokens"):
        list(interp.windows(CharTokenizer(), docs, n_tokens=100))
