"""`python -m bench`. Nothing is imported at module level: the load generator's processes start by
importing this module again, and should stay light."""

if __name__ == "__main__":
    import sys

    from bench.run import main

    sys.exit(main())
