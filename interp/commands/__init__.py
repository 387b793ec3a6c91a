"""One module per `interp` sub-command, each with `configure(parser)`, which adds the command's flags and sets `run`.

Every module imports the library (torch, TransformerLens) inside the functions that use it: parsing a command's
flags loads no torch. What the commands share is in `common` (the shared flags, the input checks, loading and
writing) and `options_cli` (flags generated from an options dataclass), used as `common.name` and
`options_cli.name`."""
