"""The one load-test harness: free ports, spawned servers waited for readiness, wrk runs, process-tree CPU.

Every benchmark in ``loadtest/`` and every test fixture that starts a real process uses these modules, so a
server is started, waited for, measured and stopped the same way everywhere:

- :mod:`loadtest.harness.procs`: free port, spawn-and-wait-ready, stop (optionally a whole process group);
- :mod:`loadtest.harness.wrk`: the Lua scripts, the ``wrk`` command, its parsed output, per-status overload runs;
- :mod:`loadtest.harness.cpu`: CPU seconds and RSS of a server's process tree (psutil).
"""
