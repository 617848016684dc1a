"""Dockerfile words: quotes, escapes and `$VAR` substitution, as Docker's shell lexer does them.

Applied to the arguments of ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME,
WORKDIR and ARG (never RUN, CMD, ENTRYPOINT: their shell does its own):

- `'...'` is literal; in `"..."` the escape character escapes only `"`, `$` and itself;
  outside quotes it makes the next character literal (the escape character is `\\`, or the
  one a `# escape=` directive chose);
- `$NAME` and `${NAME}`; `${NAME:-word}` (word if unset or empty), `${NAME-word}` (if unset),
  `${NAME:+word}` (word if set and not empty), `${NAME+word}` (if set), `${NAME:?message}` and
  `${NAME?message}` (an error); `word` is itself processed; `$` before anything else is kept.

`process_word` gives one string; `process_words` splits on unquoted whitespace (COPY sources,
EXPOSE ports, VOLUME paths). Pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping


class SubstitutionError(ValueError):
    """`${NAME?message}` of an unset variable, or a `${` that never closes."""


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text = text
        self.env = env
        self.escape = escape
        self.position = 0

    def peek(self) -> str:
        return self.text[self.position] if self.position < len(self.text) else ""

    def next(self) -> str:
        char = self.peek()
        self.position += 1
        return char

    def words(self, split: bool) -> list[str]:
        words: list[str] = []
        current: list[str] = []
        in_word = False
        while self.position < len(self.text):
            char = self.peek()
            if split and char in " \t\r\n":
                self.next()
                if in_word:
                    words.append("".join(current))
                    current, in_word = [], False
                continue
            in_word = True
            if char == "'":
                self.next()
                current.append(self.single_quoted())
            elif char == '"':
                self.next()
                current.append(self.double_quoted())
            elif char == "$":
                self.next()
                current.append(self.dollar())
            elif char == self.escape:
                self.next()
                following = self.next()
                current.append(following if following else self.escape)
            else:
                current.append(self.next())
        if in_word:
            words.append("".join(current))
        return words

    def single_quoted(self) -> str:
        out = []
        while True:
            char = self.next()
            if char in ("", "'"):
                return "".join(out)
            out.append(char)

    def double_quoted(self) -> str:
        out = []
        while True:
            char = self.next()
            if char in ("", '"'):
                return "".join(out)
            if char == "$":
                out.append(self.dollar())
            elif char == self.escape:
                following = self.next()
                if following in ('"', "$", self.escape):
                    out.append(following)
                else:
                    out.append(self.escape + following)
            else:
                out.append(char)

    def name(self) -> str:
        start = self.position
        while self.peek() and (self.peek().isalnum() or self.peek() == "_"):
            self.position += 1
        return self.text[start : self.position]

    def dollar(self) -> str:
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            return self.env.get(name, "")
        self.next()
        name = self.name()
        if not name:
            raise SubstitutionError(f"bad substitution in {self.text!r}: missing a name after ${{")
        char = self.next()
        if char == "}":
            return self.env.get(name, "")
        colon = char == ":"
        if colon:
            char = self.next()
        if char not in ("-", "+", "?"):
            raise SubstitutionError(f"unsupported modifier ({char or 'end of text'}) in substitution {self.text!r}")
        word = self.until_brace()
        value = self.env.get(name)
        empty = value is None or (colon and value == "")
        if char == "-":
            return word if empty else (value or "")
        if char == "+":
            return "" if empty else word
        if empty:
            raise SubstitutionError(f"{name}: {word or 'is not set'}")
        return value or ""

    def until_brace(self) -> str:
        out = []
        depth = 0
        while True:
            char = self.peek()
            if char == "":
                raise SubstitutionError(f"missing '}}' in {self.text!r}")
            if char == "}" and depth == 0:
                self.next()
                return "".join(out)
            if char == "$":
                self.next()
                out.append(self.dollar())
                continue
            if char == "'":
                self.next()
                out.append(self.single_quoted())
                continue
            if char == '"':
                self.next()
                out.append(self.double_quoted())
                continue
            if char == self.escape:
                self.next()
                out.append(self.next())
                continue
            out.append(self.next())


def process_word(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    return "".join(_Lexer(text, env, escape).words(split=False))


def process_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    return _Lexer(text, env, escape).words(split=True)
