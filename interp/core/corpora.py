"""Corpora: the bundled English prose, text files, folders, JSONL, and ``datasets`` names,
cut into token windows that remember which document they came from.

The bundled corpus is the documentation prose that CPython ships in ``pydoc_data.topics``
(79 topics, ~465k characters, ~100k SmolLM2 tokens); each topic is one document, so probes can
split train and test by document.

Example:
    >>> docs = interp.load_corpus()                       # bundled
    >>> for w in interp.windows(model, docs, n_tokens=128):
    ...     w.doc_id, w.seq.tokens.shape                  # ('assignment', torch.Size([128]))
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InterpError
from .pauses import PausedSequence, make_sequence

__all__ = ["BUNDLED_CORPUS", "Document", "Window", "load_corpus", "windows"]

BUNDLED_CORPUS = "pydoc"
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text")


@dataclass(frozen=True)
class Document:
    """One document: an id (unique within the corpus) and its text."""

    id: str
    text: str


@dataclass(frozen=True)
class Window:
    """A window of tokens from one document.

    Attributes:
        doc_id: the document it came from (split probes by this).
        index: which window of that document (0, 1, ...).
        start: offset of its first content token in the document's tokens.
        seq: the tokens (with an explicit BOS at position 0 when asked) and their roles.
    """

    doc_id: str
    index: int
    start: int
    seq: PausedSequence


def load_corpus(
    source: str | Path | None = None,
    *,
    field: str = "text",
    split: str = "train",
    max_docs: int | None = None,
) -> list[Document]:
    """Load documents.

    Args:
        source: ``None`` or ``"pydoc"`` for the bundled corpus; a ``.txt``/``.md`` file (one
            document); a folder (each text file a document); a ``.jsonl`` file (each line a
            document, text in ``field``); or ``"hf:NAME"`` for a ``datasets`` name (needs the
            Hub).
        field: the JSONL / dataset field holding the text.
        split: the dataset split.
        max_docs: keep only the first ``max_docs`` documents.

    Raises:
        InterpError: a missing file, a JSONL line without ``field``, or no text at all.
    """
    if source is None or str(source) == BUNDLED_CORPUS:
        from pydoc_data.topics import topics

        docs = [Document(k, v) for k, v in sorted(topics.items())]
        name = "the bundled pydoc corpus"
    elif str(source).startswith("hf:"):
        docs = _load_hf(str(source)[3:], field, split, max_docs)
        name = str(source)
    else:
        path = Path(source)
        name = str(path)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES + (".jsonl",))
            docs = []
            for f in files:
                docs += _load_file(f, field, prefix=str(f.relative_to(path)))
        elif path.is_file():
            docs = _load_file(path, field, prefix=path.name)
        else:
            raise InterpError(
                f"corpus {str(source)!r} not found",
                "give a text file, a folder of .txt/.md files, a .jsonl file, 'pydoc' (bundled) "
                "or 'hf:NAME' (a datasets name)",
            )
    docs = [d for d in docs if d.text.strip()]
    if max_docs is not None:
        docs = docs[:max_docs]
    if not docs:
        raise InterpError(f"{name} holds no text", "give a corpus with at least one non-empty document")
    return docs


def _read_text(path: Path) -> str:
    """The file's text, refusing a binary file: decoding one with replacement characters would
    record windows of '\ufffd' as if they were prose."""
    data = path.read_bytes()
    bad = data.find(b"\x00")  # UTF-8 text never holds a NUL byte; binary formats usually do
    if bad < 0:
        try:
            # newlines translated as open() in text mode does
            return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        except UnicodeDecodeError as e:
            bad = e.start
    raise InterpError(
        f"corpus file {path} is not UTF-8 text (byte {bad} cannot be decoded): it looks binary",
        "give a UTF-8 text, Markdown or JSONL file (convert it with iconv, or remove it "
        "from the folder)")


def _load_file(path: Path, field: str, prefix: str) -> list[Document]:
    if path.suffix == ".jsonl":
        docs = []
        for i, line in enumerate(_read_text(path).split("\n")):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InterpError(f"{path}:{i + 1} is not valid JSON ({e.msg})",
                                  'write one JSON object per line, e.g. {"text": "..."}') from None
            if not isinstance(row, dict) or field not in row:
                keys = ", ".join(row) if isinstance(row, dict) else type(row).__name__
                raise InterpError(
                    f"{path}:{i + 1} has no field {field!r} (it has: {keys})",
                    "pass --field NAME (field=NAME) naming the text field",
                )
            doc_id = str(row.get("id", f"{prefix}:{i}"))
            docs.append(Document(doc_id, str(row[field])))
        return docs
    return [Document(prefix, _read_text(path))]


def _load_hf(name: str, field: str, split: str, max_docs: int | None) -> list[Document]:
    try:
        import datasets
    except ImportError:
        raise InterpError("'hf:' corpora need the datasets package", "pip install datasets") from None
    try:
        ds = datasets.load_dataset(name, split=split, streaming=True)
        docs = []
        for i, row in enumerate(ds):
            if max_docs is not None and i >= max_docs:
                break
            if field not in row:
                raise InterpError(f"dataset {name!r} has no field {field!r}", f"fields: {', '.join(row)}")
            docs.append(Document(str(row.get("id", i)), str(row[field])))
    except InterpError:
        raise
    except Exception as e:  # network, missing dataset: datasets raises many types
        raise InterpError(
            f"could not load dataset {name!r} ({type(e).__name__}: {str(e)[:200]})",
            "check the name and your connection, or save it as JSONL and pass the file",
        ) from None
    return docs


def windows(
    model_or_tokenizer,
    docs: Iterable[Document],
    n_tokens: int,
    *,
    bos: bool = True,
    stride: int | None = None,
    max_windows: int | None = None,
) -> Iterator[Window]:
    """Cut documents into windows of exactly ``n_tokens`` tokens (BOS included when ``bos``).

    Windows never cross documents; a document's tail shorter than a window is dropped, so every
    window has the same length and batches without padding.

    Args:
        model_or_tokenizer: a bridge (its tokenizer is used) or a tokenizer.
        docs: documents from :func:`load_corpus`.
        n_tokens: tokens per window as the model sees them.
        bos: prepend the tokenizer's BOS to every window (role ``bos``).
        stride: content tokens between window starts (default: no overlap).
        max_windows: stop after this many windows.
    """
    if max_windows is not None and max_windows < 1:
        raise InterpError(f"max_windows={max_windows} asks for no windows",
                          "give --max-windows N (max_windows=N) with N >= 1, or leave it out for all")
    tok = getattr(model_or_tokenizer, "tokenizer", model_or_tokenizer)
    if tok is None:
        raise InterpError("this model has no tokenizer", "tokenize the corpus yourself")
    content = n_tokens - (1 if bos else 0)
    if content < 1:
        raise InterpError(f"n_tokens={n_tokens} leaves no room for text", "use n_tokens >= 2")
    stride = stride or content
    bos_id = tok.bos_token_id if bos else None
    if bos and bos_id is None:
        raise InterpError("the tokenizer has no BOS token", "pass bos=False")
    made = 0
    for doc in docs:
        ids = tok(doc.text, add_special_tokens=False)["input_ids"]
        for w, start in enumerate(range(0, len(ids) - content + 1, stride)):
            chunk = ids[start : start + content]
            roles = ["regular"] * content
            if bos:
                chunk, roles = [bos_id] + chunk, ["bos"] + roles
            yield Window(doc.id, w, start, make_sequence(chunk, roles))
            made += 1
            if max_windows is not None and made >= max_windows:
                return
    if made == 0:
        raise InterpError(
            f"no document is {content} tokens long, so no window of n_tokens={n_tokens} was made",
            "use a smaller n_tokens or a corpus with longer documents",
        )
