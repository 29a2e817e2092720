"""
The user's command-line tool ``flocker`` (`flocker.cli.script.main`).

It talks only to the control service's REST API, with the user
certificate.  Command groups are modules (``_nodes``, ``_datasets``,
``_apps``…) listed in `flocker.cli.script.COMMAND_MODULES`, each with a
``register(commands)`` function; see `flocker.cli._command` for what a
command module uses, `flocker.cli._errors` for the exit codes.
"""
