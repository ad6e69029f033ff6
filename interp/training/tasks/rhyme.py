"""A rhyming couplet in miniature: the planning toy (the analogue of the rhyme planning that
Lindsey et al. 2025, "On the Biology of a Large Language Model", found in Claude: at the
newline before a couplet's second line the model already represents the word it will rhyme
on, and that plan shapes the words written before it).

Definition: the vocabulary has ``classes`` rhyme classes of ``words`` rhyme words each (class
``a`` holds ``a1 a2 a3``, ...) and ``classes · words`` lead words ``w0 w1 ...``. An example is

* **line 1**: ``line`` rhyme words drawn uniformly from all classes; the *last* one, r, fixes
  the rhyme class c = class(r) (the others are distractors);
* the separator ``/`` (the newline);
* **line 2**: ``lead`` lead words, then the final word f. f is drawn uniformly from class c
  without r itself (a word does not rhyme with itself), so ``words − 1`` final words are right;
  the lead words depend on f alone: lead word j is ``w{π_j(f)}``, with π_j a fixed permutation
  of the rhyme words per step j (``numpy.random.default_rng(j).permutation``), so every lead
  word names f.

Format (4 classes of 3 words, line 4, lead 3)::

    <bos> c2 a1 d3 b2 / w7 w3 w10 b3
    bos   prompt ........ answer ......      (r = b2: class b; f = b3, or b1)

The loss is on line 2 (the output at ``/`` predicts the first lead word). Nothing in line 1
says which of the valid final words comes, so the first lead word is a free choice among the
class's words, and everything after it is fixed by it: the output at the separator has to know
the class (the *plan*) to spread its probability over the right lead words, and the final word
must follow the lead words, not line 1. A model therefore decides the rhyme at the separator,
and its later words carry that decision forward. Because the choice is free, exact-match
accuracy is at most ``1 / (words − 1)``; the planning control (:mod:`interp.controls`) scores
greedy continuations instead: whether the generated line ends in class c and its lead words
agree with its final word.
"""

from __future__ import annotations

from collections.abc import Sequence
from string import ascii_lowercase

import numpy as np

from ...errors import InterpError
from ._base import BOS, RawExample, Task, Vocab

__all__ = ["SEPARATOR", "Rhyme"]

SEPARATOR = "/"


class Rhyme(Task):
    """The planning toy: line 2 must end in line 1's rhyme class (see the module docstring).

    Args:
        classes: rhyme classes (2..26).
        words: rhyme words per class (>= 2, so a rhyme other than line 1's word exists).
        line: rhyme words in line 1 (the last one sets the class).
        lead: lead words in line 2 before the final word.
        **pause_options: ``pauses``, ``placement``, ``filler``, ``policy`` (see :class:`Task`).
    """

    name = "rhyme"

    def __init__(self, classes: int = 4, words: int = 3, line: int = 4, lead: int = 3,
                 **pause_options):
        super().__init__(**pause_options)
        if not 2 <= classes <= len(ascii_lowercase) or words < 2:
            raise InterpError(f"rhyme needs 2 <= classes <= 26 and words >= 2; got "
                              f"classes={classes}, words={words}",
                              "use at least 2 classes of at least 2 words (a rhyme other "
                              "than line 1's own word must exist)")
        if line < 1 or lead < 1:
            raise InterpError(f"rhyme needs line >= 1 and lead >= 1; got line={line}, "
                              f"lead={lead}", "give line 1 at least its rhyme word and line 2 "
                              "at least one lead word before the final word")
        self.classes, self.words, self.line, self.lead = classes, words, line, lead
        self.rhymes = tuple(f"{ascii_lowercase[c]}{i + 1}" for c in range(classes)
                            for i in range(words))
        n = len(self.rhymes)
        self.perms = np.stack([np.random.default_rng(j).permutation(n) for j in range(lead)])
        self.vocab = Vocab([*self.rhymes, *(f"w{i}" for i in range(n)), SEPARATOR])

    def options(self) -> dict:
        return dict(classes=self.classes, words=self.words, line=self.line, lead=self.lead)

    # -- the task's structure ---------------------------------------------------------------
    def rhyme_class(self, word: str) -> int:
        """The class index of a rhyme word (``a2`` → 0); -1 for any other token."""
        return self.rhymes.index(word) // self.words if word in self.rhymes else -1

    def valid_finals(self, prompt: Sequence[str]) -> tuple[str, ...]:
        """The right final words for a prompt (``<bos>``, line 1, ``/``): the words of the
        class of line 1's last word, without that word."""
        r = prompt[self.line]
        c = self.rhyme_class(r)
        return tuple(w for w in self.rhymes[c * self.words:(c + 1) * self.words] if w != r)

    def lead_words(self, final: str) -> tuple[str, ...]:
        """The lead words of line 2 when it ends in ``final``: ``w{π_j(final)}``, j = 1..lead."""
        f = self.rhymes.index(final)
        return tuple(f"w{self.perms[j, f]}" for j in range(self.lead))

    def lead_final(self, lead_word: str, step: int) -> str | None:
        """The final word that lead word ``lead_word`` at ``step`` (0-based) names, or
        ``None`` for a token that is no lead word."""
        if not lead_word.startswith("w") or not lead_word[1:].isdigit():
            return None
        hits = np.nonzero(self.perms[step] == int(lead_word[1:]))[0]
        return self.rhymes[int(hits[0])] if len(hits) else None

    @property
    def separator(self) -> int:
        """Position of the separator ``/`` in every example (no pauses inserted)."""
        return self.line + 1

    # -- Task -------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> RawExample:
        first = tuple(self.rhymes[i] for i in rng.integers(0, len(self.rhymes), self.line))
        prompt = (BOS, *first, SEPARATOR)
        choices = self.valid_finals(prompt)
        final = choices[int(rng.integers(0, len(choices)))]
        words = prompt + self.lead_words(final) + (final,)
        return RawExample(words, ("bos",) + ("prompt",) * (self.line + 1)
                          + ("answer",) * (self.lead + 1))

    def answer(self, prompt: Sequence[str]) -> tuple[str, ...]:
        raise InterpError("the rhyme task has several right answers (one line per valid "
                          "final word)", "read task.valid_finals(prompt) and "
                          "task.lead_words(final)")
