"""``foxcem explain-dataset``: explain a whole tensor dataset on Lightning's distributed engine.

The model is a TorchScript archive (``torch.jit.save``) or an exported program; the inputs are one
tensor file (``.pt`` or ``.npy``) of shape (N, C, H, W) (a uint8 tensor is scaled to [0, 1]),
optionally with a labels file of N class indices (``--labels``, used with ``--target label``).
``Trainer.predict`` runs with the given ``--accelerator``, ``--devices``, ``--strategy`` and
``--num-nodes`` (e.g. ``--strategy ddp --devices 8 --num-nodes 2``; Lightning launches the
processes). ``--output`` receives one shard per rank and batch and ``manifest.json``; rerunning
the command into the same folder resumes an interrupted run. Read the result with
``foxcem.io.shards.load_attributions(output)``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Union

import lightning.pytorch  # noqa: F401 - fails here, with the extra named, when not installed
import torch

from foxcem.cli.errors import CLIError
from foxcem.cli.options import parse_options
from foxcem.io.files import first_line, load_model, read_tensor_file

__all__ = ["register", "run", "main"]


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="TorchScript (.pt) or exported program (.pt2)")
    parser.add_argument("inputs", type=Path, help="tensor file (.pt or .npy), shape (N, C, H, W)")
    parser.add_argument(
        "--labels", type=Path, default=None, help="tensor file (.pt or .npy) of N class indices"
    )
    parser.add_argument(
        "--target",
        choices=("prediction", "label"),
        default="prediction",
        help="explain the predicted class (default) or the label (needs --labels)",
    )
    parser.add_argument(
        "--method",
        default="integrated_gradients",
        help="explainer name from the registry (default: integrated_gradients)",
    )
    parser.add_argument(
        "--n-steps", type=int, default=None, help="integration steps (path methods)"
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the method (repeatable); VALUE is a Python literal or a string",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu, ... (default: auto)")
    parser.add_argument(
        "--devices", default="auto", help="number of devices, a list like 0,1, or auto (default)"
    )
    parser.add_argument("--strategy", default="auto", help="e.g. ddp (default: auto)")
    parser.add_argument("--num-nodes", type=int, default=1, help="number of nodes (default: 1)")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per batch (64)")
    parser.add_argument(
        "--format",
        choices=("safetensors", "torch"),
        default="safetensors",
        help="shard file format (default: safetensors)",
    )
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="refuse an output folder that already holds shards (default: resume)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("foxcem-attributions"),
        help="output folder (default: ./foxcem-attributions)",
    )


def register(subparsers: Any) -> None:
    """Add the ``explain-dataset`` subcommand."""
    parser = subparsers.add_parser(
        "explain-dataset",
        help="explain a whole tensor dataset with Lightning (any accelerator, devices, strategy)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    parser.set_defaults(func=run)


def _read_tensor(path: Path, what: str) -> torch.Tensor:
    if not path.exists():
        raise CLIError(f"{what} file not found: {path}")
    if path.suffix.lower() not in (".pt", ".pth", ".npy"):
        raise CLIError(f"{what} file must be .pt or .npy, got {path}")
    return read_tensor_file(path, what)


def _devices(text: str) -> Union[int, str, list[int]]:
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if "," in text:
        try:
            return [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise CLIError(
                f"--devices must be a number, a list like 0,1 or auto, got {text!r}"
            ) from None
    return text


def run(args: argparse.Namespace) -> int:
    """Run ``foxcem explain-dataset`` with the parsed options; returns the exit code."""
    from torch.utils.data import DataLoader, TensorDataset

    from foxcem.core.registry import get_explainer
    from foxcem.integrations.lightning.explain_dataset import explain_dataset
    from foxcem.io.datasets import IndexedDataset

    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be positive, got {args.batch_size}")
    if args.num_nodes < 1:
        raise CLIError(f"--num-nodes must be positive, got {args.num_nodes}")
    try:
        explainer = get_explainer(args.method)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    options = parse_options(args.option)
    if args.n_steps is not None:
        if args.n_steps < 1:
            raise CLIError(f"--n-steps must be a positive integer, got {args.n_steps}")
        options["n_steps"] = args.n_steps
    inputs = _read_tensor(args.inputs, "inputs")
    if inputs.dtype == torch.uint8:
        inputs = inputs.float().div(255.0)
    if not inputs.is_floating_point():
        raise CLIError(f"{args.inputs} holds a {inputs.dtype} tensor; expected real numbers")
    if inputs.dim() != 4 or inputs.shape[0] == 0:
        raise CLIError(f"{args.inputs} must hold an (N, C, H, W) tensor, got {tuple(inputs.shape)}")
    inputs = inputs.float().contiguous()
    tensors = [inputs]
    if args.labels is not None:
        labels = _read_tensor(args.labels, "labels")
        if labels.is_floating_point() or labels.dim() != 1 or len(labels) != len(inputs):
            raise CLIError(
                f"{args.labels} must hold {len(inputs)} integer class indices (N,), got "
                f"{labels.dtype} of shape {tuple(labels.shape)}"
            )
        tensors.append(labels.long())
    elif args.target == "label":
        raise CLIError("--target label needs --labels")
    model = load_model(args.model, torch.device("cpu"))
    try:
        with torch.no_grad():
            scores = model(inputs[:1])
    except Exception as exc:
        raise CLIError(f"the model cannot run on {args.inputs}: {first_line(exc)}") from None
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2:
        raise CLIError("the model must return class scores of shape (N, classes)")
    loader = DataLoader(
        IndexedDataset(TensorDataset(*tensors)), batch_size=args.batch_size, shuffle=False
    )
    trainer_kwargs = {
        "accelerator": args.accelerator,
        "devices": _devices(args.devices),
        "strategy": args.strategy,
        "num_nodes": args.num_nodes,
        "enable_progress_bar": not args.quiet,
    }
    # Lightning's banners (GPU available, TPU available, …) would bury a one-line error.
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    manifest = explain_dataset(
        model,
        loader,
        explainer,
        trainer_kwargs=trainer_kwargs,
        output_dir=args.output,
        explainer_kwargs=options,
        target=args.target,
        file_format=args.format,
        resume=not args.no_resume,
    )
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:
        state = "complete" if manifest.get("complete") else "INCOMPLETE"
        print(
            f"explained {manifest['num_samples']} of {len(inputs)} samples ({state}) in "
            f"{manifest['num_shards']} shards -> {args.output / 'manifest.json'}"
        )
    return 0 if manifest.get("complete") else 1


def main(argv: Any = None) -> int:
    """``python -m foxcem.cli.explain_dataset ...`` (the ``foxcem explain-dataset`` command)."""
    from foxcem.cli import main as cli_main

    return cli_main(["explain-dataset", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
