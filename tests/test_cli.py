"""The `pocketbert` command itself: every stage registers, and a stage that cannot be imported is an error."""
from __future__ import annotations

import pytest

from pocketbert import cli


def test_every_stage_registers_its_subcommands():
    choices = cli.build_parser()._subparsers._group_actions[0].choices
    assert {"data", "distill", "export", "bench", "eval", "device"} <= set(choices)


def test_a_stage_that_cannot_be_imported_fails_loudly(monkeypatch):
    monkeypatch.setattr(cli, "STAGE_CLIS", (*cli.STAGE_CLIS, "pocketbert.no_such_stage"))
    with pytest.raises(ImportError, match="pocketbert.no_such_stage.*make setup"):
        cli.build_parser()
