"""Command line: `python -m bench COMMAND`; one module per command group, loaded when its command runs.

Bad input is one line on stderr and exit code 2, never a traceback: every layer
raises a ``bench.core.errors.UsageError`` subclass for it, caught once here. A
cell that fails is a row in the table, never a stopped run. Exit code 1 is kept
for "a comparison found a regression". Building the parser imports only the
command modules, which import torch, pandas and the rest inside their handlers,
so ``python -m bench --help`` stays fast and never imports torch.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, NoReturn

from bench.cli import analysis, export, hardware, run
from bench.core.errors import EXIT_ENVIRONMENT, EXIT_USAGE, EnvironmentProblem, UsageError
from bench.core.text import did_you_mean

#: command groups, in the order `python -m bench` lists them
GROUPS = (run, analysis, hardware, export)


class Parser(argparse.ArgumentParser):
    """argparse without prefix matching (``--pipeline`` is not ``--pipelines``), with "did you mean"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            word, options = choice.group(1), re.findall(r"'?([\w-]+)'?", choice.group(2))
            if message.startswith(("argument COMMAND:", "argument ACTION:")):
                kind = "command" if message.startswith("argument COMMAND:") else "action"
                message = f"unknown {kind} {word!r}{did_you_mean(word, options)}"
            else:  # an option's value: keep argparse's "argument --fp32-as: ..." and add the closest choice
                message += did_you_mean(word, options)
        super().error(message)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Any]]:
    parser = Parser(
        prog="python -m bench",
        description="genbench: how fast, how much memory, and at what cost to output quality, "
        "for generative models on this hardware with these optimizations.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="run `python -m bench COMMAND --help` for each command's options and examples",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands: dict[str, Any] = {}
    for group in GROUPS:
        commands.update(group.register(sub))
    return parser, commands


def command_list(parser: argparse.ArgumentParser) -> str:
    """Every command with its one-line help, as `python -m bench` with no command prints it."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    width = max(len(choice.dest) for choice in sub._choices_actions)
    lines = [f"  {choice.dest.ljust(width)}  {choice.help}" for choice in sub._choices_actions]
    return "commands:\n" + "\n".join(lines)


def _unknown_options(parser: argparse.ArgumentParser, command: str, extra: list[str]) -> str:
    """ "unrecognized arguments: --pipeline; did you mean --pipelines?" for the command's own options."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = [o for action in sub.choices[command]._actions for o in action.option_strings]
    flags = [word.split("=", 1)[0] for word in extra if word.startswith("-")]
    hint = did_you_mean(flags[0], options) if flags else ""
    return f"unrecognized arguments: {' '.join(extra)}{hint}"


def main(argv: list[str] | None = None) -> int:
    parser, commands = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print(command_list(parser), file=sys.stderr)
        return EXIT_USAGE
    try:
        if extra:
            raise UsageError(_unknown_options(parser, args.command, extra))
        return commands[args.command](args)
    except UsageError as exc:
        print(f"genbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EnvironmentProblem as exc:
        print(f"genbench: error: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
