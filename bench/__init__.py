"""The benchmark: is the receiver fast where it matters? `python -m bench` (or `--smoke`); see bench/README.md."""
