"""The ``ael`` command line: one thin dispatcher over the subcommands each part of the package owns.

Each subcommand lives next to the code it drives and exposes ``cli_main(argv) -> int``; this module
only picks one, configures logging once, and turns expected errors into a one-line message and a
non-zero exit code instead of a traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

# name -> (module with cli_main, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("ael.commands.demo", "a short AEL run on the synthetic default, with the per-class IoU table"),
    "train": ("ael.commands.train", "train with a config file and key=value overrides (CPU, GPU or torchrun)"),
    "eval": ("ael.commands.eval", "evaluate a checkpoint on a dataset split and write coloured predictions"),
    "splits": ("ael.commands.splits", "write labeled/unlabeled split files for a dataset protocol"),
    "runs": ("ael.commands.runs", "list the runs under a folder"),
    "dashboard": ("ael.commands.dashboard", "open the live Streamlit dashboard on a runs folder"),
    "compare": ("ael.commands.compare", "train several methods over several seeds on the same data and budget, "
                "and summarise them (mean ± std)"),
    "preview": ("ael.commands.preview", "write PNG previews of adaptive Copy-Paste and CutMix on the synthetic default"),
}

USAGE = "usage: ael <command> [options]   (ael <command> --help for a command's options)"


def _help_text() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [USAGE, "", "commands:"]
    lines += [f"  {name.ljust(width)}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ael <command> ...``; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_help_text())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from ael import __version__

        print(f"ael {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"ael: unknown command {name!r}\n\n{_help_text()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.cli_main(rest) or 0)
    except KeyboardInterrupt:
        print("ael: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        # Errors raised on purpose by ael (bad config, data, checkpoint, run folder) and OS errors
        # on a user's path already say what is wrong and where: show that, not a traceback.
        if type(err).__module__.startswith("ael.") or isinstance(err, OSError):
            print(f"ael {name}: error: {err}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
