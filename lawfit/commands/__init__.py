"""Subcommands of the ``lawfit`` CLI; each module exposes ``add_parser(subparsers)``."""
