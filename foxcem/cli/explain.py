"""``foxcem explain``: explain a saved model's predictions on image or tensor files.

The model is an exported program (``torch.export.save``, usually ``.pt2``; recommended), an ONNX
file (``.onnx``, run forward-only by ONNX Runtime: the ``onnx`` extra; CEM then uses the
black-box gradient) or a TorchScript archive (``torch.jit.save``, usually ``.pt``; deprecated by
torch, still read). Inputs are images (``.png``, ``.jpg``, ``.jpeg``,
``.gif``, ``.webp``, read with torchvision) scaled to [0, 1], or tensors (``.npy``, ``.pt``) of
shape (H, W), (C, H, W) or (N, C, H, W), used as they are (a uint8 tensor is scaled to [0, 1]).
Then ``--grayscale`` or ``--rgb``, ``--resize``/``--center-crop`` (as torchvision's transforms) or ``--size``,
and ``--mean``/``--std`` are applied, in that order.

Outputs in ``--output``: per input ``<name>_heatmap.png``, ``<name>_overlay.png`` and
``<name>_figure.png`` (the explanation over the un-normalised input, with a colorbar; for CEM the
input beside its PP or x + PN with the new class), and
``attributions.pt`` — a dict with ``attributions`` (the raw result, N first), ``files``,
``inputs`` (the preprocessed batch), ``targets``, ``predictions``, ``method``, ``options`` and,
for CEM, ``found`` (per input: whether an explanation was found)
(``torch.load(path, weights_only=True)`` reads it).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any, Optional

import torch

from foxcem.cli.errors import CLIError
from foxcem.cli.methods import HelpWithMethod, ListMethods
from foxcem.cli.options import parse_floats, parse_options, parse_size, parse_targets
from foxcem.cli.outputs import jsonable, safe_stem, unscale, write_figures, write_image_png
from foxcem.cli.preprocess import preprocess
from foxcem.core.explainer import split_convergence_delta
from foxcem.io.files import (
    IMAGE_SUFFIXES,
    TENSOR_SUFFIXES,
    expected_channels,
    first_line,
    load_inputs,
    load_model,
    read_tensor_file,
)

__all__ = [
    "register",
    "run",
    "preprocess",
    # moved to foxcem.io.files and foxcem.cli.options; importable from here as before
    "IMAGE_SUFFIXES",
    "TENSOR_SUFFIXES",
    "load_inputs",
    "load_model",
    "parse_options",
    "read_tensor_file",
]


def forward_only() -> list[str]:
    """The registered methods that need forward passes only (CEM through its black-box
    gradient): what a model run forward only (ONNX) can be explained with."""
    from foxcem.core.registry import available_explainers, get_explainer_class

    return sorted(n for n in available_explainers() if not get_explainer_class(n).needs_gradients)


def register(subparsers: Any) -> None:
    """Add the ``explain`` subcommand."""
    parser = subparsers.add_parser(
        "explain",
        help="explain a saved model (exported program, ONNX, TorchScript) on images or tensors",
        description=__doc__.split("\n\n", 1)[1].replace("``", "") if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    parser.add_argument("-h", "--help", action=HelpWithMethod,
                        help="show this help (after --method NAME: also that method's options)")  # fmt: skip
    parser.add_argument("--list-methods", action=ListMethods,
                        help="list every method with a line of description and its options")  # fmt: skip
    parser.add_argument(
        "model",
        type=Path,
        help="exported program (.pt2, torch.export.save), ONNX (.onnx) or TorchScript (.pt)",
    )
    parser.add_argument(
        "inputs", type=Path, nargs="+", metavar="INPUT", help="image or tensor files"
    )
    parser.add_argument("--method", default="integrated_gradients",
                        help="registered method or alias (default: integrated_gradients; "
                        "--list-methods lists them)")  # fmt: skip
    parser.add_argument(
        "--target",
        default=None,
        help="class to explain: one int for all inputs, or a comma-separated int per sample "
        "(default: the model's prediction)",
    )
    parser.add_argument(
        "--n-steps", type=int, default=None, help="integration steps (path methods)"
    )
    parser.add_argument("--mode", default=None, help="CEM mode: PP or PN")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other option of the method (repeatable); VALUE is a Python literal "
        "(1, 0.5, True, None, 'text', [1, 2]) or else a string",
    )
    parser.add_argument("--mean", default=None,
                        help="per-channel mean to subtract, e.g. 0.485,0.456,0.406 (negative "
                        "values too: --mean -0.1,0,0)")  # fmt: skip
    parser.add_argument(
        "--std", default=None, help="per-channel std to divide by, e.g. 0.229,0.224,0.225"
    )
    parser.add_argument("--resize", type=int, default=None,
                        help="resize the shorter side to N, keeping the aspect ratio")  # fmt: skip
    parser.add_argument("--center-crop", default=None,
                        help="crop the centre to H,W (or one number for a square)")  # fmt: skip
    parser.add_argument("--size", default=None, help="resize to exactly H,W (or one number)")
    colour = parser.add_mutually_exclusive_group()
    colour.add_argument("--grayscale", action="store_true", help="convert inputs to one channel")
    colour.add_argument("--rgb", action="store_true",
                        help="repeat a grey input to three channels (for an RGB model)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=None,
                        help="explain this many inputs at a time (default: all at once)")  # fmt: skip
    parser.add_argument(
        "--sign",
        default="absolute",
        choices=("absolute", "positive", "negative", "all"),
        help="what the heatmaps show (default: absolute)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=0.7,
        help="heatmap weight of the overlay where the attribution is strongest (default: 0.7)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("foxcem-explain"),
        help="output folder (default: ./foxcem-explain)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``foxcem explain`` with the parsed arguments; returns the exit code."""
    with warnings.catch_warnings():
        # Deprecation notices about the loaders (torch.jit, torchvision.io) and Captum's note on
        # hooks are noise on a command line.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        return _run(args)


def _check_arguments(args: argparse.Namespace, explainer: Any) -> dict[str, Any]:
    """The cheap checks, before anything is read; returns the method's options."""
    from foxcem.core.registry import available_explainers, get_explainer_class

    if explainer.hooks_modules:
        usable = [n for n in available_explainers() if not get_explainer_class(n).hooks_modules]
        raise CLIError(
            f"{args.method} hooks the model's modules, which a TorchScript, exported or ONNX "
            f"model does not run as Python modules; choose one of: {', '.join(usable)}"
        )
    if not 0.0 <= args.alpha <= 1.0:
        raise CLIError(f"--alpha must be in [0, 1], got {args.alpha}")
    for name in ("resize", "batch_size", "n_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    options = parse_options(args.option)
    if args.n_steps is not None:
        options["n_steps"] = args.n_steps
    if args.mode is not None:
        options["mode"] = args.mode.upper()
    if explainer.registry_name == "cem":
        options.setdefault("progress", not args.quiet)
    elif explainer.registry_name == "occlusion":
        options.setdefault("show_progress", not args.quiet)
    return options


def check_channels(model: Any, channels: int) -> None:
    """One clear line when the images' channels differ from what the model takes."""
    expected = expected_channels(model)
    if expected is None or expected == channels:
        return
    fix = " (use --rgb)" if (channels, expected) == (1, 3) else ""
    fix = " (use --grayscale)" if (channels, expected) == (3, 1) else fix
    raise CLIError(
        f"the model expects {expected} channel{'s' if expected > 1 else ''}; the images have "
        f"{channels}{fix}"
    )


def _explain(
    explainer: Any, model: Any, inputs: torch.Tensor, target: Any, options: dict, args: Any
) -> tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Explain in chunks of ``--batch-size``; (attributions, delta or None, found or None)."""
    from foxcem.core.progress import progress_bar

    size = args.batch_size or inputs.shape[0]
    starts = range(0, inputs.shape[0], size)
    parts, deltas, found = [], [], []
    bar = progress_bar(len(starts), args.method, enabled=len(starts) > 1 and not args.quiet)
    for start in starts:
        chunk = inputs[start : start + size]
        chunk_target = target[start : start + size] if isinstance(target, list) else target
        try:
            result = explainer.calculate_features(model, chunk, chunk_target, **options)
        except (TypeError, ValueError) as exc:
            message = first_line(exc).replace("`pred_label_idx`", "--target")
            raise CLIError(f"{args.method}: {message}") from None
        result, delta = split_convergence_delta(
            result, options.get("return_convergence_delta", False) is True
        )
        parts.append(result.detach().cpu())
        if delta is not None:
            deltas.append(delta.detach().cpu())
        if "found" in getattr(explainer, "meta_data", {}):
            found.append(explainer.meta_data["found"].cpu())
        bar.update(1)
    bar.close()
    return (
        torch.cat(parts),
        torch.cat(deltas) if deltas else None,
        torch.cat(found) if found else None,
    )


def _run(args: argparse.Namespace) -> int:
    from foxcem.core.checks import check_scores
    from foxcem.core.registry import get_explainer
    from foxcem.viz import attribution_to_rgb, normalize_attribution, overlay

    try:
        explainer = get_explainer(args.method)
    except (ValueError, TypeError) as exc:
        raise CLIError(str(exc)) from None
    options = _check_arguments(args, explainer)
    mean, std = parse_floats(args.mean, "--mean"), parse_floats(args.std, "--std")
    size, crop = parse_size(args.size), parse_size(args.center_crop, "--center-crop")
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        raise CLIError(f"--device {args.device!r}: {first_line(exc)}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {args.device}: CUDA is not available on this machine")

    tensors, names = load_inputs(args.inputs)
    batch = preprocess(tensors, args.grayscale, size, mean, std, args.resize, crop, args.rgb)
    target = parse_targets(args.target, batch.shape[0])
    model = load_model(args.model, device)
    if getattr(model, "differentiable", True) is False:  # e.g. an ONNX model: forward only
        if explainer.registry_name == "cem":
            options.setdefault("gradient", "urv")
        elif explainer.needs_gradients:
            raise CLIError(
                f"{args.method} needs gradients, which {args.model.name} (run forward only) "
                f"cannot give; use one of the forward-only methods: {', '.join(forward_only())}"
            )
    check_channels(model, batch.shape[1])
    inputs = batch.to(device)
    try:  # the model must map (N, C, H, W) to class scores (N, classes)
        with torch.no_grad():
            scores = check_scores(model(inputs), inputs.shape[0])
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    except Exception as exc:
        raise CLIError(
            f"the model failed on the inputs of shape {tuple(inputs.shape)}: {first_line(exc)}"
        ) from None
    predictions = scores.argmax(dim=1).cpu()
    attributions, delta, found = _explain(explainer, model, inputs, target, options, args)
    if isinstance(target, int):
        targets = torch.full((inputs.shape[0],), target, dtype=torch.long)
    elif target is not None:
        targets = torch.tensor(target, dtype=torch.long)
    else:
        targets = predictions.clone()

    output: Path = args.output
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create output folder {output}: {exc.strerror or exc}") from None
    display = unscale(batch, mean, std)
    maps = normalize_attribution(attributions, sign=args.sign)
    heat = attribution_to_rgb(attributions, sign=args.sign, size=display.shape[-2:])
    blended = overlay(display, heat, alpha=args.alpha, weights=maps.abs())
    used: set[str] = set()
    stems = [safe_stem(name, used) for name in names]
    written = []
    for i, stem in enumerate(stems):
        for suffix, image in (("heatmap", heat[i]), ("overlay", blended[i])):
            path = output / f"{stem}_{suffix}.png"
            write_image_png(image, path)
            written.append(path.name)
    method = explainer.registry_name or args.method
    cem = None
    if found is not None:
        cem = {"found": found, "mode": str(options.get("mode", "PN")).upper()}
    written += write_figures(
        output, stems, batch, attributions, method=method, sign=args.sign, targets=targets,
        mean=mean, std=std, model=model, cem=cem,
    )  # fmt: skip
    payload: dict[str, Any] = {
        "attributions": attributions,
        "files": [str(p) for p in args.inputs],
        "names": names,
        "inputs": batch,
        "targets": targets,
        "predictions": predictions,
        "method": method,
        "options": json.dumps({k: jsonable(v) for k, v in options.items()}),
    }
    if delta is not None:
        payload["convergence_delta"] = delta
    if found is not None:
        payload["found"] = found
    torch.save(payload, output / "attributions.pt")
    print(
        f"explained {len(names)} input(s) with {method}: attributions "
        f"{tuple(attributions.shape)} -> {output / 'attributions.pt'}, {len(written)} PNGs in {output}"
    )
    if found is not None:
        missing = [names[i] for i in (~found).nonzero().flatten().tolist()]
        kind = cem["mode"] if cem else "PN"
        print(
            f"{kind} found for {int(found.sum())}/{len(names)} input(s)"
            + (f"; none for {', '.join(missing)} (drawn as 'not found')" if missing else "")
        )
    return 0
