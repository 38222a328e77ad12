"""The one error type that reaches the user as a single line and exit code 2."""

import argparse


class UsageError(Exception):
    """Bad input from the user (a config value, a flag, a file).

    The message is printed as one line, without a traceback, and the process exits with code 2.
    It should name the offending key or file and say what to do.
    """


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the verbs: a bad flag is a UsageError (one line, exit 2), like a bad config."""

    def error(self, message):
        raise UsageError(message)
