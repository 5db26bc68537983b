"""``quiver optimize MODEL --data DATA --repo REPO``: build faster variants, keep those that pass the
accuracy and speed gates, write them into the model repository with a report."""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_RECIPES = {
    "transformer": [
        "graph",
        "int8-dynamic",
        "graph+int8-dynamic",
        "int8-dynamic:per_channel=0",
        "int4",
        "fp16",
        "prune:heads=2,sparsity=0.25,steps=100",
        "distill:layers=3,steps=600+int8-dynamic",
    ],
    "mlp": [
        "graph",
        "int8-dynamic",
        "int8-static",
        "prune:sparsity=0.5",
        "prune:sparsity=0.5+int8-dynamic",
        "fp16",
        "sparsify:sparsity=0.8",
    ],
    "tree": ["graph"],
    "generic": ["graph", "int8-dynamic", "int8-static:method=entropy", "fp16"],
}

EPILOG = """\
recipes: passes joined by '+', options after ':' (comma-separated key=value), e.g.
  graph+int8-dynamic:per_channel=1   prune:sparsity=0.5,steps=300+int8-static:method=percentile
passes (quiver optimize --list-passes for options):
  graph          ONNX Runtime graph optimizer (transformer fusions for BERT-like encoders)
  int8-dynamic   int8 weights, activations quantized at run time (per_channel, weights=s8|u8, op_types, exclude)
  int8-static    int8 with calibration (method=minmax|entropy|percentile, per_channel, format=qdq|qoperator)
  int4           weight-only int4 MatMul (MatMulNBits; block_size, accuracy_level)
  fp16 / bf16    half precision (kept only where faster; bf16 stores weights only on x86)
  prune          structured: drops MLP hidden units / FFN neurons (sparsity) and attention heads (heads),
                 then a short recovery fine-tune (steps, lr)
  sparsify       unstructured magnitude pruning: smaller when compressed, NOT faster on dense runtimes
  distill        smaller student (layers) trained on the teacher's outputs (steps, lr, checkpoint_every);
                 resumable: rerun the same command with the same --workdir
gates: a variant is kept when its primary metric (ROC-AUC / accuracy / agreement; fit for regression;
mean cosine x100 for embeddings) drops at most --max-drop points AND it is --min-speedup faster at batch 1
or in throughput. int8 variants that fail the accuracy gate are retried with the worst nodes kept in float.
model files: .pkl/.joblib are unpickled, which runs code: only pass files you trust.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "optimize",
        help="make faster model variants (quantize, prune, distill), gated by accuracy and speed",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model",
        nargs="?",
        help="ONNX file, Hugging Face folder, .pkl/.joblib (scikit-learn), .json/.ubj (XGBoost) or .txt (LightGBM)",
    )
    p.add_argument(
        "--data",
        help="evaluation data: .npz/.csv/.parquet (inputs + optional 'label' column) or .txt "
        "(one text per line, text models)",
    )
    p.add_argument(
        "--train-data",
        help="unlabeled inputs for calibration, recovery fine-tune and distillation "
        "(same formats); default: a seeded half of --data, the other half is held out for the gates",
    )
    p.add_argument("--repo", help="model repository to write the kept variants into")
    p.add_argument("--name", help="model name in the repository (default: the model file's stem)")
    p.add_argument(
        "--recipe",
        action="append",
        dest="recipes",
        metavar="RECIPE",
        help="a recipe to try (repeatable); default: a set chosen for the model family",
    )
    p.add_argument("--task", choices=["classification", "regression", "embedding"], help="override the detected task")
    p.add_argument("--label-column", help="label column/array name (default: label, labels, y or target)")
    p.add_argument(
        "--max-drop", type=float, default=1.0, help="allowed drop of the primary metric in points (default 1.0)"
    )
    p.add_argument("--min-speedup", type=float, default=1.05, help="required speedup over fp32 (default 1.05)")
    p.add_argument("--allow-size-only", action="store_true", help="also keep smaller-but-not-faster variants")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads for timing and serving")
    p.add_argument("--seq-len", type=int, default=128, help="sequence length for text models (default 128)")
    p.add_argument("--features", type=int, help="input feature count, when the model file does not record it")
    p.add_argument("--seed", type=int, default=0, help="seed for data splits, fine-tuning and distillation")
    p.add_argument("--budget", type=float, default=1.0, help="timing seconds per batch size per variant")
    p.add_argument(
        "--workdir", default=".quiver-optimize", help="scratch and checkpoint folder (default .quiver-optimize)"
    )
    p.add_argument("--report", help="HTML report path (default <repo>/<name>/report.html)")
    p.add_argument("--overwrite", action="store_true", help="replace existing versions of --name in --repo")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--list-passes", action="store_true", help="list passes with their options and exit")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from quiver.errors import QuiverError

    if args.list_passes:
        from quiver.optimize.registry import PASSES, _load_builtin

        _load_builtin()
        for name, cls in sorted(PASSES.items()):
            opts = ", ".join(f"{k}={v!r}" for k, v in cls.defaults.items()) or "-"
            print(f"{name:14} [{cls.stage}] {opts}")
        return 0
    missing = [f for f in ("model", "data", "repo") if not getattr(args, f)]
    if missing:
        print(
            f"quiver optimize: error: missing {', '.join('--' + m if m != 'model' else 'MODEL' for m in missing)}",
            file=sys.stderr,
        )
        return 2
    try:
        from quiver.optimize.api import optimize_path

        result, html_path = optimize_path(
            Path(args.model),
            Path(args.data),
            Path(args.repo),
            name=args.name,
            recipes=args.recipes,
            task=args.task,
            label_column=args.label_column,
            train_data=Path(args.train_data) if args.train_data else None,
            max_drop=args.max_drop,
            min_speedup=args.min_speedup,
            allow_size_only=args.allow_size_only,
            threads=args.threads,
            seq_len=args.seq_len,
            n_features=args.features,
            seed=args.seed,
            budget_s=args.budget,
            workdir=Path(args.workdir),
            report=Path(args.report) if args.report else None,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except QuiverError as exc:
        print(f"quiver optimize: error: {exc.message}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"quiver optimize: error: {exc}", file=sys.stderr)
        return 1
    from quiver.optimize.report import table

    print(table(result))
    print(f"\nreport: {html_path}")
    return 0
