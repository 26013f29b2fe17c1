"""The `hypoderm` commands: one module per command, each with

    add_arguments(parser: argparse.ArgumentParser) -> None   its options (torch-free, so every --help is fast)
    run(args: argparse.Namespace) -> int                     calls the library, prints, returns the exit code

hypoderm.cli imports only the module of the command being run; a command module imports the library (and with
it torch, where the library needs it) inside `run`, never at the top.
"""
