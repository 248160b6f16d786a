"""The case store: sessions and migrations, tables, row <-> engine-state mapping, the audit
chain, timers, and the read queries that the CLI, reports, notifications and Prefect use.

Nothing here decides anything: the pure engine (`models/`) decides and the commands
(`nim_pathway/commands/`) write through this package, one transaction each."""
