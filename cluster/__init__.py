"""Getting a Ray cluster: ``ray up`` configs (``local.yaml``) and :mod:`cluster.runtime`, the one way a
process starts or attaches to Ray (CLI, batch jobs, the live app, benchmarks, ``ray job submit``)."""
