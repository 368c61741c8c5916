"""The ``nexara`` command line: the top layer of the project.

Layering, bottom to top: the core (``nexara``, every module but this package: no Ray) -> ``cluster``
(starting or attaching to Ray) -> ``actors`` and ``training`` -> ``serve`` -> ``nexara.cli``. A module
imports only from its own layer or those below it, so the CLI may import every runtime and nothing
imports the CLI (``tests/unit/test_architecture.py`` checks it on the source). Each command module
imports its runtime (Ray, torch) inside the command, so ``nexara config validate`` stays instant.
"""

from nexara.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
