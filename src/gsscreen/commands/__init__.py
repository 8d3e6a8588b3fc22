"""CLI sub-commands, one module per pipeline area (see ``gsscreen.cli``)."""
