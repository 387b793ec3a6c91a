"""One module per `interp` sub-command."""
