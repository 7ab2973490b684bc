"""Every option of the two command lines says what it does."""

import argparse

import pytest

from collect.cli import build_parser as collect_parser
from lawfit.cli import build_parser as lawfit_parser


def _undocumented(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += _undocumented(sub, f"{prefix} {name}")
        elif not isinstance(action, argparse._HelpAction) and not action.help:
            missing.append(f"{prefix} {'/'.join(action.option_strings) or action.dest}")
    return missing


@pytest.mark.parametrize(
    ("build", "prog"), [(lawfit_parser, "lawfit"), (collect_parser, "collect")]
)
def test_every_flag_has_help_text(build, prog):
    assert _undocumented(build(), prog) == []


def test_collect_run_prints_its_flag_only_defaults(capsys):
    from collect.config import DEFAULTS
    from collect.probe import TrainConfig

    with pytest.raises(SystemExit) as stop:
        collect_parser().parse_args(["run", "--help"])
    assert stop.value.code == 0  # help, not a usage error
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {DEFAULTS['modules'][0]})" in text
    assert f"(default: {TrainConfig.max_steps})" in text
