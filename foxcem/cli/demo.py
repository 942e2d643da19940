"""``foxcem demo``: every method on real handwritten digits, with figures and a summary table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    from foxcem.demo.run import DEFAULT_CEM, DEFAULT_METHODS, DEFAULT_NUM_IMAGES

    parser = subparsers.add_parser(
        "demo",
        help="train a small CNN on real digits and explain it with every method",
        description=(
            "Train a small CNN on scikit-learn's bundled handwritten digits (no download; weights "
            "are cached), explain test digits with Integrated Gradients, Layer Integrated "
            "Gradients, gradient saliency and CEM (pertinent positive and negative, autograd and "
            "black-box URV gradients), and write explanations.png, cem_savepoints.png and "
            "summary.json. Needs the demo extra: pip install 'foxcem[demo]'."
        ),
    )
    parser.add_argument(
        "--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the split, training and CEM (default: 0)"
    )
    parser.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=(
            "comma-separated methods to run (default: all): "
            + ", ".join(DEFAULT_METHODS)
            + "; registry names such as integrated_gradients are accepted too"
        ),
        metavar="LIST",
    )
    parser.add_argument(
        "--num-iter",
        type=int,
        default=None,
        help=f"CEM optimisation steps (default: {DEFAULT_CEM['num_iter']})",
    )
    parser.add_argument(
        "--num-images",
        type=int,
        default=DEFAULT_NUM_IMAGES,
        help=f"test digits to explain (default: {DEFAULT_NUM_IMAGES})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("foxcem-demo"),
        help="output folder (default: ./foxcem-demo)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where trained weights are cached (default: $XDG_CACHE_HOME/foxcem or ~/.cache/foxcem)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: 30)")
    parser.add_argument(
        "--gamma",
        type=float,
        default=None,
        help="weight of the autoencoder term in the CEM runs (default: 100; 0: no autoencoder)",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="always train; do not read or write the cache"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads for the whole run (default: 0, foxcem's choice per call)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo with the parsed options; returns the exit code."""
    from foxcem.cli.errors import CLIError
    from foxcem.demo.run import DemoConfig, format_table, parse_methods, run_demo

    try:
        methods = parse_methods(args.methods)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if args.threads < 0:
        raise CLIError(f"--threads must be 0 or more, got {args.threads}")
    for name in ("num_iter", "num_images", "epochs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    config = DemoConfig(
        seed=args.seed,
        device=args.device,
        methods=methods,
        num_images=args.num_images,
        output=args.output,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        progress=not args.quiet,
        threads=args.threads,
    )
    if args.num_iter is not None:
        config.num_iter = args.num_iter
    if args.epochs is not None:
        config.epochs = args.epochs
    if args.gamma is not None:
        if not (args.gamma >= 0 and args.gamma < float("inf")):
            raise CLIError(f"--gamma must be a finite number >= 0, got {args.gamma}")
        config.gamma = args.gamma
    summary = run_demo(config, log=print)
    print(format_table(summary))
    print(f"wrote {', '.join(summary['files'])} to {summary['output']}")
    return 0
