"""The benchmark report: PNG plots and report.md from the report.json record."""

from __future__ import annotations

from pathlib import Path

from hashidx.errors import HashidxError
from hashidx.io.atomic import atomic_path


def pyplot():
    """matplotlib.pyplot on the Agg backend, or a one-line error saying how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise HashidxError(
            "the benchmark report needs matplotlib; pip install matplotlib (a hashidx dependency)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")


def plot_map_vs_bits(report: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for method in dict.fromkeys(r["method"] for r in report["results"]):
        rows = [r for r in report["results"] if r["method"] == method]
        ax.plot([r["bits"] for r in rows], [r["mAP"] for r in rows], marker="o", label=method)
    ax.set(xlabel="code length (bits)", ylabel="mAP (full ranking, tie-aware)", title="mAP vs code length")
    ax.set_xticks(sorted({r["bits"] for r in report["results"]}))
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))  # outside: no curve hides behind it
    _save(fig, path)
    plt.close(fig)


def plot_curves(report: dict, path: Path, kind: str) -> None:
    """PR curves (kind='pr') or precision@k curves (kind='pk'), one panel per code length."""
    plt = pyplot()
    bits_list = sorted({r["bits"] for r in report["results"]})
    fig, axes = plt.subplots(1, len(bits_list), figsize=(4.2 * len(bits_list), 3.6), squeeze=False)
    for ax, bits in zip(axes[0], bits_list):
        for r in (r for r in report["results"] if r["bits"] == bits):
            if kind == "pr":
                ax.plot(r["pr_curve"]["recall"], r["pr_curve"]["precision"], marker=".", label=r["method"])
            else:
                ax.plot(r["p_at_k_curve"]["k"], r["p_at_k_curve"]["precision"], marker=".", label=r["method"])
        if kind == "pr":
            ax.set(xlabel="recall", ylabel="precision", title=f"PR by Hamming radius, {bits} bits", xlim=(0, 1.02))
        else:
            ax.set(xlabel="k (results returned)", ylabel="precision@k", title=f"precision@k, {bits} bits", xscale="log")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_scaling(report: dict, path: Path) -> None:
    plt = pyplot()
    rows = report["scaling"]
    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    ns = [r["n"] for r in rows]
    ax.plot(ns, [r["symmetric_s"] for r in rows], marker="o", label="symmetric: backbone + head, every image")
    ax.plot(
        ns, [r["ahcl_s"] for r in rows], marker="o", label=f"AHCL: backbone on the pool ({rows[0]['pool']}) + solver"
    )
    for r in rows:
        ax.annotate(
            f"×{r['ratio']:.1f}",
            (r["n"], r["symmetric_s"]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=8,
        )
    ax.set(
        xlabel="database size n (images)",
        ylabel="time to database codes (s)",
        title="Database encoding time vs database size (symmetric ÷ AHCL above)",
    )
    ax.set_ylim(0, 1.18 * max(max(r["symmetric_s"], r["ahcl_s"]) for r in rows))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)


def _runtime_lines(rows: list[dict]) -> list[str]:
    """The side-by-side backbone timing of both runtimes, where the report has one."""
    if not rows:
        return []
    lines = [
        "Backbone ms per image pass, both runtimes timed side by side on the same images (best of interleaved rounds):",
        "",
        "| batch | views | torch eager | ONNX Runtime | speed-up | max abs difference |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['batch']} | {r['views']} | {r['torch_ms_per_pass']:.1f} | {r['onnx_ms_per_pass']:.1f} | "
            f"{r['speedup']:.1f}x | {r['max_abs_diff']:.1e} |"
        )
    return [*lines, ""]


def write_report(report: dict, out: Path) -> None:
    """Write the PNGs and report.md beside report.json."""
    plot_map_vs_bits(report, out / "map_vs_bits.png")
    plot_curves(report, out / "pr_curves.png", "pr")
    plot_curves(report, out / "precision_at_k.png", "pk")
    plot_scaling(report, out / "encoding_vs_n.png")
    s = report["split"]
    extra = [k for k in ("NDCG@100", "ACG@100", "WAP@100") if report["results"] and k in report["results"][0]]
    extra_head = "".join(f" {k} (no re-rank) |" for k in extra)
    lines = [
        "# hashidx benchmark",
        "",
        f"Dataset `{report['dataset']}`: {report['n_images']} images, {report['classes']} classes. "
        + (
            f"Multi-label: {report['label_names']} labels from `{report['labels']}`; relevant = shares a label. "
            f"Split: iterative stratification, {s['query_fraction']:.0%} as queries (seed {s['seed']}): "
            if report.get("multilabel")
            else f"Split: stratified, {s['query_fraction']:.0%} of each class as queries (seed {s['seed']}): "
        )
        + f"{s['n_query']} queries, {s['n_database']} database items (also the training set). "
        f"Backbone {report['backbone']} (frozen), features averaged over {report['views']} orientation(s); "
        f"training pool: {report['train_pool'] or 'all'} of the database; training seed {report['seed']}.",
        "",
        f"Ranking: Hamming distance, re-ranked by uᵀv (--rerank {report.get('rerank', 'none')}) where a "
        f"column says so; figures are {report['tie_rule']}.",
        "",
        f"Machine: {report['machine']['cpus']} CPUs ({report['machine']['processor']}), "
        f"{report['machine']['torch_threads']} torch threads; backbone {report['backbone_ms_per_pass']:.1f} ms per "
        f"image pass on {report.get('runtime', 'torch')}, measured on this run's feature extraction. "
        f"Total run {report['total_s']:.0f} s.",
        "",
        *_runtime_lines(report.get("backbone_runtimes", [])),
        "## Retrieval and cost per method",
        "",
        "Database encoding = images → database codes: backbone passes (measured ms/pass × count) plus, for AHCL, "
        "the solver's code steps, for the others the head over every database image.",
        "",
        "Retrieval figures, re-ranked (the default) and without re-ranking:",
        "",
        "| method | bits | mAP | mAP, no re-rank | mAP, ties in db order | mAP@100 | P@10 | P@H≤2 |"
        + extra_head
        + " search (ms/query) | search + re-rank (ms/query) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * (2 + len(extra)),
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['method']} | {r['bits']} | {r['mAP']:.4f} | {r.get('mAP_no_rerank', float('nan')):.4f} | "
            f"{r.get('mAP_db_order', float('nan')):.4f} | {r['mAP@100']:.4f} | {r['P@10']:.4f} | {r['P@H<=2']:.4f} |"
            + "".join(f" {r[k]:.4f} ({r[k + '_no_rerank']:.4f}) |" for k in extra)
            + f" {r['search_ms_per_query']:.3f} | {r.get('search_rerank_ms_per_query', float('nan')):.3f} |"
        )
    lines += [
        "",
        "Cost per method:",
        "",
        "| method | bits | training (s) | images through network for database codes |"
        " database encoding (s) | query encoding (ms/image) | index build (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['method']} | {r['bits']} | {r['train_s']:.1f} | {r['database_images_through_network']} | "
            f"{r['database_encoding_s']:.1f} | {r['query_encoding_ms_per_image']:.1f} | {r['index_build_ms']:.2f} |"
        )
    lines += [
        "",
        "![mAP vs bits](map_vs_bits.png)",
        "",
        "![PR curves](pr_curves.png)",
        "",
        "![precision@k](precision_at_k.png)",
        "",
        "## Scaling: time to database codes vs database size (measured side by side)",
        "",
        f"Pool fixed at {report['scaling'][0]['pool']} images, {report['scaling'][0]['views']} view(s); both "
        "methods' backbone passes run for real in this section.",
        "",
        "| n | AHCL (s) | symmetric (s) | symmetric ÷ AHCL | images through network: AHCL | symmetric |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["scaling"]:
        lines.append(
            f"| {r['n']} | {r['ahcl_s']:.2f} | {r['symmetric_s']:.2f} | {r['ratio']:.2f} | "
            f"{r['ahcl_images']} | {r['symmetric_images']} |"
        )
    lines += [
        "",
        "![encoding time vs n](encoding_vs_n.png)",
        "",
        "Command: `"
        + " ".join(report["command"])
        + "`; versions: "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items())
        + ".",
    ]
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
