"""Starting, limiting and stopping the worker process: transport, sandbox tiers, pids cgroups."""
