"""Docker's word processing and .dockerignore rules, as pure functions."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from client.build_context import IgnoreRules, write_context
from engine.build.shell import SubstitutionError, process_word, process_words

ENV = {"NAME": "world", "EMPTY": "", "PATHS": "a b"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello $NAME", "hello world"),
        ("${NAME}s", "worlds"),
        ("${MISSING:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY-fallback}", ""),
        ("${MISSING-fallback}", "fallback"),
        ("${NAME:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${MISSING:-${NAME}}", "world"),
        ("'$NAME'", "$NAME"),
        ('"$NAME and \\$NAME"', "world and $NAME"),
        ("\\$NAME", "$NAME"),
        ('"a\\b"', "a\\b"),
        ("cost $5", "cost "),  # $5 is a positional parameter, empty, as in Docker's lexer
        ("$", "$"),
        ('"two words"', "two words"),
    ],
)
def test_process_word_substitutes_as_docker(text: str, expected: str) -> None:
    assert process_word(text, ENV) == expected


def test_process_words_splits_on_unquoted_whitespace_after_substitution_of_each_word() -> None:
    assert process_words('one "two three" $NAME', ENV) == ["one", "two three", "world"]


def test_escape_directive_character_replaces_backslash() -> None:
    assert process_word("`$NAME", ENV, escape="`") == "$NAME"
    assert process_word("C:\\dir", ENV, escape="`") == "C:\\dir"


def test_required_variables_and_bad_substitutions_are_errors() -> None:
    with pytest.raises(SubstitutionError, match="MISSING: needed"):
        process_word("${MISSING:?needed}", ENV)
    with pytest.raises(SubstitutionError, match="missing '}'"):
        process_word("${NAME:-oops", ENV)


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (["*.env"], "secret.env", True),
        (["*.env"], "sub/secret.env", False),  # * does not cross directories
        (["**/*.env"], "sub/deep/secret.env", True),
        (["**/*.env"], "secret.env", True),  # ** matches zero directories
        (["logs"], "logs/a/b.txt", True),  # a directory excludes what is under it
        (["logs/*", "!logs/keep.txt"], "logs/keep.txt", False),
        (["logs/*", "!logs/keep.txt"], "logs/other.txt", True),
        (["!keep", "*"], "keep", True),  # the last matching pattern wins
        (["/rooted.txt"], "rooted.txt", True),
        (["a?c"], "abc", True),
        (["[ab].txt"], "b.txt", True),
        (["# comment", ""], "# comment", False),
    ],
)
def test_dockerignore_rules(patterns: list[str], path: str, excluded: bool) -> None:
    assert IgnoreRules(patterns).excludes(path) is excluded


def test_context_tar_leaves_out_excluded_files_but_keeps_dockerfile_and_dockerignore(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / ".dockerignore").write_text("Dockerfile\n.dockerignore\n*.log\n")
    (tmp_path / "app.py").write_text("print()\n")
    (tmp_path / "debug.log").write_text("x\n")
    out = io.BytesIO()
    write_context(tmp_path, out)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        assert sorted(tar.getnames()) == [".dockerignore", "Dockerfile", "app.py"]
