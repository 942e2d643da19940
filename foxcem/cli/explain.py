"""``foxcem explain``: explain a saved model's predictions on image or tensor files.

The model is a TorchScript archive (``torch.jit.save``, usually ``.pt``) or an exported program
(``torch.export.save``, usually ``.pt2``) or an ONNX file (``.onnx``, run forward-only by ONNX
Runtime: the ``onnx`` extra; CEM then uses the black-box gradient). Inputs are images (``.png``, ``.jpg``, ``.jpeg``,
``.gif``, ``.webp``, read with torchvision) scaled to [0, 1], or tensors (``.npy``, ``.pt``) of
shape (H, W), (C, H, W) or (N, C, H, W), used as they are (a uint8 tensor is scaled to [0, 1]).
Then ``--grayscale``, ``--size`` and ``--mean``/``--std`` are applied, in that order.

Outputs in ``--output``: per input ``<name>_heatmap.png`` and ``<name>_overlay.png``, and
``attributions.pt`` — a dict with ``attributions`` (the raw result, N first), ``files``,
``inputs`` (the preprocessed batch), ``targets``, ``predictions``, ``method`` and ``options``
(``torch.load(path, weights_only=True)`` reads it).
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import torch

from foxcem.cli.errors import CLIError
from foxcem.cli.options import parse_floats, parse_options, parse_size, parse_targets
from foxcem.cli.outputs import jsonable, safe_stem, unscale, write_image_png
from foxcem.core.explainer import split_convergence_delta
from foxcem.io.files import (
    IMAGE_SUFFIXES,
    TENSOR_SUFFIXES,
    ExportedModule,
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


def register(subparsers: Any) -> None:
    """Add the ``explain`` subcommand."""
    parser = subparsers.add_parser(
        "explain",
        help="explain a saved model (TorchScript or exported program) on images or tensors",
        description=__doc__.split("\n\n", 1)[1].replace("``", "") if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model", type=Path, help="TorchScript (.pt), exported program (.pt2) or ONNX (.onnx)"
    )
    parser.add_argument(
        "inputs", type=Path, nargs="+", metavar="INPUT", help="image or tensor files"
    )
    parser.add_argument(
        "--method",
        default="integrated_gradients",
        help="explainer name from the registry (default: integrated_gradients); "
        "`python -c 'import foxcem; print(foxcem.available_explainers())'` lists them",
    )
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
        "(1, 0.5, True, None, 'text', [1, 2]) or else a string; `layer=NAME` names a submodule",
    )
    parser.add_argument(
        "--mean", default=None, help="per-channel mean to subtract, e.g. 0.485,0.456,0.406"
    )
    parser.add_argument(
        "--std", default=None, help="per-channel std to divide by, e.g. 0.229,0.224,0.225"
    )
    parser.add_argument("--size", default=None, help="resize to H,W (or one number for a square)")
    parser.add_argument("--grayscale", action="store_true", help="convert inputs to one channel")
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
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("foxcem-explain"),
        help="output folder (default: ./foxcem-explain)",
    )
    parser.set_defaults(func=run)


def preprocess(
    tensors: Sequence[torch.Tensor],
    grayscale: bool = False,
    size: Optional[tuple[int, int]] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> torch.Tensor:
    """Grayscale, resize and normalise each (n, C, H, W) tensor, then concatenate them.

    Raises:
        CLIError: inconsistent shapes or a mean/std of the wrong length (one line).
    """
    import torch.nn.functional as F

    out = []
    for tensor in tensors:
        if grayscale and tensor.shape[1] == 3:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            tensor = (tensor * weights).sum(dim=1, keepdim=True)
        elif grayscale and tensor.shape[1] != 1:
            raise CLIError(f"--grayscale needs 1 or 3 channels, got {tensor.shape[1]}")
        if size is not None and tuple(tensor.shape[-2:]) != size:
            tensor = F.interpolate(
                tensor, size=size, mode="bilinear", antialias=True, align_corners=False
            )
        out.append(tensor)
    shapes = {tuple(t.shape[1:]) for t in out}
    if len(shapes) > 1:
        listed = ", ".join(str(s) for s in sorted(shapes))
        raise CLIError(f"inputs have different shapes {listed}; use --size H,W (and --grayscale)")
    batch = torch.cat(out)
    channels = batch.shape[1]
    for name, values in (("--mean", mean), ("--std", std)):
        if values is not None and len(values) not in (1, channels):
            raise CLIError(
                f"{name} has {len(values)} values but the inputs have {channels} channels"
            )
    if std is not None and any(v == 0 for v in std):
        raise CLIError("--std must not contain zeros")
    if mean is not None:
        batch = batch - torch.tensor(mean).view(1, -1, 1, 1)
    if std is not None:
        batch = batch / torch.tensor(std).view(1, -1, 1, 1)
    return batch.contiguous()


def _resolve_layer(model: Any, options: dict[str, Any]) -> None:
    """Replace a ``layer`` option given by name with the submodule (``features.2``)."""
    layer = options.get("layer")
    if not isinstance(layer, str):
        return
    modules = dict(model.named_modules()) if isinstance(model, torch.nn.Module) else {}
    if isinstance(model, ExportedModule):  # names as in the original model
        modules.update(
            {k[len("module.") :]: v for k, v in modules.items() if k.startswith("module.")}
        )
    if layer not in modules or not layer:
        known = ", ".join(k for k in modules if k and not k.startswith("module.")) or "none"
        raise CLIError(
            f"--option layer={layer}: the model has no submodule {layer!r} (it has: {known})"
        )
    options["layer"] = modules[layer]


# ----------------------------------------------------------------------------------------------
# the command


def run(args: argparse.Namespace) -> int:
    """Run ``foxcem explain`` with the parsed options; returns the exit code."""
    with warnings.catch_warnings():
        # Deprecation notices about the loaders (torch.jit, torchvision.io) and Captum's note on
        # requires_grad are for library authors, not for the person running the command.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*did not already require gradients.*")
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from foxcem.core.checks import check_scores
    from foxcem.core.registry import available_explainers, get_explainer, get_explainer_class
    from foxcem.viz import attribution_to_rgb, normalize_attribution, overlay

    # Cheap checks first: the method, the options, the files.
    try:
        explainer = get_explainer(args.method)
    except (ValueError, TypeError) as exc:
        raise CLIError(str(exc)) from None
    if explainer.hooks_modules:  # refused before anything is loaded
        usable = [n for n in available_explainers() if not get_explainer_class(n).hooks_modules]
        raise CLIError(
            f"{args.method} hooks the model's modules, which a TorchScript, exported or ONNX "
            f"model does not run as Python modules; choose one of: {', '.join(usable)}"
        )
    mean, std = parse_floats(args.mean, "--mean"), parse_floats(args.std, "--std")
    size = parse_size(args.size)
    if not 0.0 <= args.alpha <= 1.0:
        raise CLIError(f"--alpha must be in [0, 1], got {args.alpha}")
    options = parse_options(args.option)
    if args.n_steps is not None:
        if args.n_steps < 1:
            raise CLIError(f"--n-steps must be a positive integer, got {args.n_steps}")
        options["n_steps"] = args.n_steps
    if args.mode is not None:
        options["mode"] = args.mode.upper()
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        raise CLIError(f"--device {args.device!r}: {first_line(exc)}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {args.device}: CUDA is not available on this machine")

    tensors, names = load_inputs(args.inputs)
    batch = preprocess(tensors, args.grayscale, size, mean, std)
    target = parse_targets(args.target, batch.shape[0])
    model = load_model(args.model, device)
    if getattr(model, "differentiable", True) is False:  # e.g. an ONNX model: forward only
        if explainer.registry_name == "cem":
            options.setdefault("gradient", "urv")
        elif explainer.needs_gradients:
            raise CLIError(
                f"{args.method} needs gradients, which {args.model.name} (run forward only) "
                "cannot give; use --method occlusion or --method cem (black-box)"
            )
    _resolve_layer(model, options)
    inputs = batch.to(device)

    # The model must map (N, C, H, W) to class scores (N, classes).
    try:
        with torch.no_grad():
            scores = model(inputs)
    except Exception as exc:
        raise CLIError(
            f"the model failed on the inputs of shape {tuple(inputs.shape)}: {first_line(exc)}"
        ) from None
    try:
        scores = check_scores(scores, inputs.shape[0])
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    predictions = scores.argmax(dim=1).cpu()

    try:
        result = explainer.calculate_features(model, inputs, target, **options)
    except (TypeError, ValueError) as exc:
        message = first_line(exc).replace("`pred_label_idx`", "--target")
        raise CLIError(f"{args.method}: {message}") from None
    except (RuntimeError, AssertionError) as exc:
        if "hook" in str(exc).lower():
            raise CLIError(
                f"{args.method} hooks a layer of the model, which a TorchScript module or an "
                "exported program does not call; choose an input-space method such as "
                "integrated_gradients"
            ) from None
        raise
    result, delta = split_convergence_delta(result)
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
    attributions = result.detach().cpu()
    display = unscale(batch, mean, std)
    maps = normalize_attribution(attributions, sign=args.sign)
    heat = attribution_to_rgb(attributions, sign=args.sign, size=display.shape[-2:])
    blended = overlay(display, heat, alpha=args.alpha, weights=maps.abs())
    used: set[str] = set()
    written = []
    for i, name in enumerate(names):
        stem = safe_stem(name, used)
        for suffix, image in (("heatmap", heat[i]), ("overlay", blended[i])):
            path = output / f"{stem}_{suffix}.png"
            write_image_png(image, path)
            written.append(path.name)
    payload: dict[str, Any] = {
        "attributions": attributions,
        "files": [str(p) for p in args.inputs],
        "names": names,
        "inputs": batch,
        "targets": targets,
        "predictions": predictions,
        "method": explainer.registry_name or args.method,
        "options": json.dumps({k: jsonable(v) for k, v in options.items()}),
    }
    if delta is not None:
        payload["convergence_delta"] = delta.detach().cpu()
    torch.save(payload, output / "attributions.pt")
    print(
        f"explained {len(names)} input(s) with {payload['method']}: attributions "
        f"{tuple(attributions.shape)} -> {output / 'attributions.pt'}, {len(written)} PNGs in {output}"
    )
    return 0
