"""The command line's parsing of values that look like options."""

from __future__ import annotations

import pytest

from codeengine.ops.cli import _parser

# A real pseudonym shape (16 base64url characters) that starts with '-', as one in 64 does.
DASHED = "-viAv1icXbKk5kcq"


def test_a_pseudonym_starting_with_a_dash_is_taken_in_the_equals_form() -> None:
    args = _parser().parse_args(["audit", "verify", f"--subject={DASHED}"])
    assert args.subject == DASHED


def test_the_spaced_form_refuses_it_which_is_why_the_help_says_equals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["audit", "verify", "--subject", DASHED])
    assert "expected one argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parser().parse_args(["audit", "verify", "--help"])
    assert "--subject=PSEUDONYM" in capsys.readouterr().out
