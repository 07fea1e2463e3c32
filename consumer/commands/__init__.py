"""The ``mlevents`` commands: argument parsing and one function per command.

``main`` builds the parser from each command module's ``add_parser``; a module imports what
its command needs (the Azure SDKs, the emulator, the worker) inside the function that runs
it, so an offline command starts without them.
"""
