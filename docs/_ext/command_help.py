"""
Print a Flocker command's ``--help`` texts as JSON, for the documentation.

Run as ``python command_help.py PROG MODULE:FUNCTION`` (the console script's
entry point, as ``setup.py`` declares it).  The entry point is called with
``sys.argv = [PROG, "--help"]`` after ``argparse`` has been changed so that
the first parse, instead of parsing, prints::

    {"available": true, "helps": [[["flocker-ca"], "usage: ..."],
                                  [["flocker-ca", "initialize"], "usage: ..."]]}

(every sub-command, depth first, in the parser's order) and ends the
process at once: nothing the command would do after parsing runs, whatever
reactor or exception handling surrounds the parse.  A module that does not
exist (yet) prints ``{"available": false, "missing": MODULE}``.  Anything else
that goes wrong exits non-zero with the reason on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any


def _helps(parser: argparse.ArgumentParser, path: list[str]) -> list[Any]:
    """``[path, help]`` for the parser and each of its sub-commands."""
    result: list[Any] = [[path, parser.format_help()]]
    seen: set[int] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if id(sub) in seen:  # an alias of a sub-command already shown
                    continue
                seen.add(id(sub))
                result.extend(_helps(sub, [*path, name]))
    return result


def _emit(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document))
    sys.stdout.flush()


def _missing(module: str, error: ModuleNotFoundError) -> bool:
    """The import failed because ``module`` (or a package of it) is not there."""
    name = error.name or ""
    return bool(name) and (module == name or module.startswith(name + "."))


def main(prog: str, entry: str) -> None:
    """Print the help texts of the command ``prog`` whose entry point is ``entry``."""
    module_name, _, function_name = entry.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if _missing(module_name, error) and module_name.startswith("flocker."):
            _emit({"available": False, "missing": module_name})
            os._exit(0)
        raise
    function = getattr(module, function_name)

    def capture(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        _emit({"available": True, "helps": _helps(self, [prog])})
        os._exit(0)

    argparse.ArgumentParser.parse_known_args = capture  # type: ignore[method-assign]
    argparse.ArgumentParser.parse_args = capture  # type: ignore[method-assign]
    sys.argv = [prog, "--help"]
    function()
    sys.stderr.write(f"{prog}: {entry} returned without parsing a command line\n")
    sys.stderr.flush()
    os._exit(1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
