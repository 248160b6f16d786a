"""Orchestration: keeping Prefect's picture equal to the case store, below the flows, the
Prefect tasks and the CLI, above the commands (it calls the service, never the reverse).

- `naming`       run names and tags (no Prefect import)
- `prefect_api`  where Prefect is, whether it answers, reading and starting runs
- `forms`        the Resume and open-case forms and a task's description
- `sync`         one case: start, resume, cancel its runs; after a command, wait or sync
- `drain`        the orchestration journal: drain it, or serve it as the sync service
- `reconcile`    the nightly audit of all live runs, and the saved run views

Nothing here imports Prefect at module level except `forms` (its models are Prefect
RunInputs), so a CLI command that finds the sync service running never imports Prefect.
"""
