"""What the tests share besides their fixtures (tests/conftest.py has those), imported as `support.<module>`
(pytest puts tests/ on sys.path: `pythonpath` in pyproject.toml; started processes get it in PYTHONPATH).

standin       the stand-in OptiPick API's key, and the route and cluster results it serves
backends      the PostgreSQL/Redis test servers: skipped locally without them, failed in CI
deliveries    signed deliveries through the app in-process or over HTTP, and running the queue in this thread
processes     starting this project's programs as subprocesses (shared with the bench: tests.support.processes)
...           handler modules named in HANDLER_MODULES by the tests, and the crash suite's harness (crash_*)
"""
