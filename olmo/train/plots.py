"""``olmo-train plot``: loss, learning rate and throughput PNGs from ``metrics.jsonl``."""

from __future__ import annotations

from pathlib import Path

from olmo.train.metrics import METRICS_FILE, read_metrics


def plot_run(run_dir: Path, out: Path | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = read_metrics(run_dir)
    train = [m for m in metrics if "loss" in m]
    if not train:
        raise FileNotFoundError(f"no training metrics in {Path(run_dir) / METRICS_FILE}")
    out = out or Path(run_dir) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    steps = [m["step"] for m in train]
    written = []
    panels = [
        ("loss.png", "loss", "training loss"),
        ("lr.png", "lr", "learning rate"),
        ("throughput.png", "tokens_per_s", "tokens/s (all devices)"),
    ]
    for name, key, title in panels:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(steps, [m.get(key) for m in train], label=key)
        if key == "loss":
            val = [m for m in metrics if "eval/val_loss" in m]
            if val:
                ax.plot(
                    [m["step"] for m in val], [m["eval/val_loss"] for m in val], "o-",
                    label="validation",
                )  # fmt: skip
            ax.legend()
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        written.append(out / name)
    return written
