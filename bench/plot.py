"""An optional picture of the acknowledgement latencies: one cumulative distribution per phase.

Drawn only when matplotlib is installed (`pip install -r bench/requirements.txt`); the bench itself
does not need it, so CI's smoke run does not either.
"""

from pathlib import Path
from typing import Any


def latency_plot(acks: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axes = plt.subplots(figsize=(9, 5.5))
    for key, figures in acks.items():
        sample = figures["latency_sample_ms"]
        if not sample:
            continue
        share = [i / (len(sample) - 1) for i in range(len(sample))]
        axes.step(sample, share, where="post", label=f"{key}: {figures['requests_per_s']:.0f} req/s")
    axes.set_xscale("log")
    axes.set_xlabel("acknowledgement latency (ms, log scale)")
    axes.set_ylabel("share of requests answered within")
    axes.set_title("Acknowledgement latency, same server and generator for every mode")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
