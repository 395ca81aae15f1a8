"""Command-line interface: one module per subcommand, each thin (parse -> call the API -> print)."""
