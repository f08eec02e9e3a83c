"""What the tests share besides their fixtures (tests/conftest.py has those), imported as `support.<module>`:
pytest puts tests/ on sys.path (`pythonpath` in pyproject.toml), and started processes get it in PYTHONPATH.

standin         the stand-in OptiPick API's key, the results it serves, and ids it has no result for
backends        the backends a test runs on, and the PostgreSQL/Redis servers they need (skip locally, fail in CI)
deliveries      signed deliveries to the app in-process or over HTTP; running the queue in this thread
outcomes        what a test reads back: rows, their history, results files; ageing an event for set-up
answers         what every answer of POST /webhook must respect
cli             the command line in-process, and reading the `events` table
concurrency     threads and processes racing in the order a test sets, by events
events          handler events built directly, for the handler tests
processes       starting this project's programs as subprocesses (for the bench too, as tests.support.processes)

Handler modules the tests name in HANDLER_MODULES: example_handlers, bad_pattern_handlers, counting_handler,
slow_handler. The crash suite's harness (tests/suites/test_crash.py): crash_support, and inside the processes
under test crash_app (served by gunicorn), crash_handler and crash_common.
"""
