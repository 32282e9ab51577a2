"""Command-line handlers: each module exposes ``cli_main(argv) -> int`` for one ``ael`` subcommand."""
