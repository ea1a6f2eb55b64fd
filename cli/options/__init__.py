"""Flags shared by several subcommands, each with the function that turns them into the
parameters of a library object (cli/commands/* use them; the libraries never see argparse)."""
