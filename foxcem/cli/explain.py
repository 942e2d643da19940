"""``foxcem explain``: explain a saved model's predictions on image or tensor files.

The model is a TorchScript archive (``torch.jit.save``, usually ``.pt``) or an exported program
(``torch.export.save``, usually ``.pt2``). Inputs are images (``.png``, ``.jpg``, ``.jpeg``,
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
import ast
import json
import logging
import re
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import torch

from foxcem.base import split_convergence_delta
from foxcem.cli import CLIError

__all__ = [
    "register",
    "run",
    "load_model",
    "load_inputs",
    "parse_options",
    "preprocess",
    "IMAGE_SUFFIXES",
    "TENSOR_SUFFIXES",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
TENSOR_SUFFIXES = (".npy", ".pt", ".pth")
#: PNGs smaller than this (short side, pixels) are enlarged by an integer factor (nearest).
MIN_PNG_SIZE = 128

_T = TypeVar("_T")


def register(subparsers: Any) -> None:
    """Add the ``explain`` subcommand."""
    parser = subparsers.add_parser(
        "explain",
        help="explain a saved model (TorchScript or exported program) on images or tensors",
        description=__doc__.split("\n\n", 1)[1].replace("``", "") if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", type=Path, help="TorchScript (.pt) or exported program (.pt2)")
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


# ----------------------------------------------------------------------------------------------
# parsing helpers


def _numbers(text: str, convert: Callable[[str], _T], error: str, sep: str = r"[,\s]+") -> list[_T]:
    """The non-empty parts of ``text`` split on ``sep``, converted; ``CLIError(error)`` if one
    is not a number."""
    try:
        return [convert(v) for v in re.split(sep, text.strip()) if v]
    except ValueError:
        raise CLIError(error) from None


def _floats(text: Optional[str], name: str) -> Optional[list[float]]:
    if text is None:
        return None
    values = _numbers(text, float, f"{name} must be comma-separated numbers, got {text!r}")
    if not values:
        raise CLIError(f"{name} must hold at least one number")
    return values


def _size(text: Optional[str]) -> Optional[tuple[int, int]]:
    if text is None:
        return None
    error = f"--size must be H,W or one integer, got {text!r}"
    values = _numbers(text.lower(), int, error, sep=r"[,x\s]+")
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise CLIError(f"--size must be H,W or one positive integer, got {text!r}")
    return values[0], values[1]


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: literal(value)}`` (a string when not a literal)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise CLIError(
                f"--option must be KEY=VALUE with a Python identifier as KEY, got {item!r}"
            )
        options[key] = _literal(value.strip())
    return options


def _targets(text: Optional[str], n: int) -> Any:
    if text is None:
        return None
    values = _numbers(text, int, f"--target must be an int or comma-separated ints, got {text!r}")
    if len(values) == 1:
        return values[0]
    if len(values) != n:
        raise CLIError(f"--target gives {len(values)} classes for {n} samples")
    return values


# ----------------------------------------------------------------------------------------------
# loading


def _check_file(path: Path, what: str) -> None:
    """Raise a one-line ``CLIError`` unless ``path`` is an existing file."""
    if not path.exists():
        raise CLIError(f"{what} file not found: {path}")
    if not path.is_file():
        raise CLIError(f"{what} path is not a file: {path}")


def load_model(path: Path, device: torch.device) -> Any:
    """Load a TorchScript archive or an exported program as a callable module on ``device``.

    Raises:
        CLIError: a missing or unreadable file (one line).
    """
    _check_file(path, "model")
    how = (
        "save one with torch.jit.save(torch.jit.script(model), 'model.pt') or "
        "torch.export.save(torch.export.export(model, (example,)), 'model.pt2')"
    )
    if not zipfile.is_zipfile(path):
        raise CLIError(
            f"cannot load model {path}: not a TorchScript archive nor an exported program; {how}"
        )
    with zipfile.ZipFile(path) as archive:
        entries = archive.namelist()
    if any(n.endswith("/data.pkl") for n in entries) and not any(
        n.endswith("/constants.pkl") for n in entries
    ):
        raise CLIError(
            f"cannot load model {path}: it was saved with torch.save (a pickle, which this "
            f"command does not unpickle); {how}"
        )
    errors = []
    loaders = [("TorchScript", _load_torchscript), ("exported program", _load_exported)]
    if path.suffix == ".pt2":
        loaders.reverse()
    for kind, loader in loaders:
        try:
            model = loader(path, device)
        except Exception as exc:  # try the other format, then report both
            errors.append(f"{kind}: {_first_line(exc)}")
            continue
        if hasattr(model, "eval"):
            model.eval()
        return model
    raise CLIError(
        f"cannot load model {path}: not a TorchScript archive (torch.jit.save) nor an exported "
        f"program (torch.export.save) ({'; '.join(errors)})"
    )


def _load_torchscript(path: Path, device: torch.device) -> Any:
    return torch.jit.load(str(path), map_location=device)


class ExportedModule(torch.nn.Module):
    """An exported program's module as an ordinary ``nn.Module``.

    Its train/eval behaviour was fixed when the program was exported (the exported module refuses
    ``.eval()``), so :meth:`train` is a no-op here; everything else is delegated.
    """

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Call the exported module."""
        return self.module(*args, **kwargs)

    def train(self, mode: bool = True) -> ExportedModule:
        """No-op: the exported program's mode is fixed."""
        return self


def _load_exported(path: Path, device: torch.device) -> Any:
    logger = logging.getLogger("torch.export")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # it logs a traceback before trying its legacy format
    try:
        program = torch.export.load(str(path))
    finally:
        logger.setLevel(level)
    module = ExportedModule(program.module())
    if device.type != "cpu":
        module = module.to(device)
    return module


def _first_line(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(exc).__name__


def _read_image(path: Path) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        data = read_file(str(path))
        image = decode_image(data, mode=ImageReadMode.UNCHANGED)
    except Exception as exc:
        raise CLIError(f"cannot read image {path}: {_first_line(exc)}") from None
    if image.dim() == 4:  # an animated GIF: its first frame
        image = image[0]
    if image.shape[0] in (2, 4):  # drop alpha
        image = image[:-1]
    return image.float().div(255.0).unsqueeze(0)


def read_tensor_file(path: Path, what: str = "tensor") -> torch.Tensor:
    """The one tensor in a ``.npy`` (NumPy, no pickles) or ``.pt`` file, on the CPU.

    Raises:
        CLIError: an unreadable file, or one that holds something else (one line).
    """
    try:
        if path.suffix.lower() == ".npy":
            import numpy as np

            tensor = torch.from_numpy(np.load(str(path), allow_pickle=False))
        else:
            tensor = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CLIError(f"cannot read {what} file {path}: {_first_line(exc)}") from None
    if not isinstance(tensor, torch.Tensor):
        raise CLIError(f"{path} must hold one tensor, got {type(tensor).__name__}")
    return tensor


def _read_tensor(path: Path) -> torch.Tensor:
    tensor = read_tensor_file(path)
    if tensor.dtype == torch.uint8:
        tensor = tensor.float().div(255.0)
    elif tensor.dtype == torch.bool or tensor.is_complex():
        raise CLIError(f"{path} holds a {tensor.dtype} tensor; expected real numbers")
    tensor = tensor.float()
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 4 or tensor.numel() == 0:
        raise CLIError(
            f"{path} must hold an (H, W), (C, H, W) or (N, C, H, W) tensor, "
            f"got shape {tuple(tensor.shape)}"
        )
    return tensor


def load_inputs(paths: Sequence[Path]) -> tuple[list[torch.Tensor], list[str]]:
    """Read every input file: a list of (n, C, H, W) float tensors and one name per sample.

    Raises:
        CLIError: a missing file, an unknown suffix or an unreadable file (one line).
    """
    tensors, names = [], []
    for path in paths:
        _check_file(path, "input")
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            tensor = _read_image(path)
        elif suffix in TENSOR_SUFFIXES:
            tensor = _read_tensor(path)
        else:
            known = ", ".join(IMAGE_SUFFIXES + TENSOR_SUFFIXES)
            raise CLIError(f"unsupported input {path}: expected one of {known}")
        tensors.append(tensor)
        if tensor.shape[0] == 1:
            names.append(path.name)
        else:
            names.extend(f"{path.name}[{i}]" for i in range(tensor.shape[0]))
    return tensors, names


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


def _unscale(
    batch: torch.Tensor, mean: Optional[Sequence[float]], std: Optional[Sequence[float]]
) -> torch.Tensor:
    if std is not None:
        batch = batch * torch.tensor(std).view(1, -1, 1, 1)
    if mean is not None:
        batch = batch + torch.tensor(mean).view(1, -1, 1, 1)
    return batch


def _safe_stem(name: str, used: set[str]) -> str:
    match = re.fullmatch(r"(.*)\[(\d+)\]", name)  # sample i of a batched tensor file
    stem = f"{Path(match.group(1)).stem}_{match.group(2)}" if match else Path(name).stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem) or "input"
    candidate, k = stem, 1
    while candidate in used:
        k += 1
        candidate = f"{stem}_{k}"
    used.add(candidate)
    return candidate


def _write_png(image: torch.Tensor, path: Path) -> None:
    """Write (3, H, W) float in [0, 1], enlarged (nearest) when small."""
    from torchvision.io import write_png

    from foxcem.visualization import enlarge, to_uint8

    write_png(to_uint8(enlarge(image, MIN_PNG_SIZE)).cpu(), str(path))


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
    from foxcem.checks import check_scores
    from foxcem.registry import get_explainer
    from foxcem.visualization import attribution_to_rgb, normalize_attribution, overlay

    # Cheap checks first: the method, the options, the files.
    try:
        explainer = get_explainer(args.method)
    except (ValueError, TypeError) as exc:
        raise CLIError(str(exc)) from None
    mean, std = _floats(args.mean, "--mean"), _floats(args.std, "--std")
    size = _size(args.size)
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
        raise CLIError(f"--device {args.device!r}: {_first_line(exc)}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {args.device}: CUDA is not available on this machine")

    tensors, names = load_inputs(args.inputs)
    batch = preprocess(tensors, args.grayscale, size, mean, std)
    target = _targets(args.target, batch.shape[0])
    model = load_model(args.model, device)
    _resolve_layer(model, options)
    inputs = batch.to(device)

    # The model must map (N, C, H, W) to class scores (N, classes).
    try:
        with torch.no_grad():
            scores = model(inputs)
    except Exception as exc:
        raise CLIError(
            f"the model failed on the inputs of shape {tuple(inputs.shape)}: {_first_line(exc)}"
        ) from None
    try:
        scores = check_scores(scores, inputs.shape[0])
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    predictions = scores.argmax(dim=1).cpu()

    try:
        result = explainer.calculate_features(model, inputs, target, **options)
    except (TypeError, ValueError) as exc:
        message = _first_line(exc).replace("`pred_label_idx`", "--target")
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
    display = _unscale(batch, mean, std)
    maps = normalize_attribution(attributions, sign=args.sign)
    heat = attribution_to_rgb(attributions, sign=args.sign, size=display.shape[-2:])
    blended = overlay(display, heat, alpha=args.alpha, weights=maps.abs())
    used: set[str] = set()
    written = []
    for i, name in enumerate(names):
        stem = _safe_stem(name, used)
        for suffix, image in (("heatmap", heat[i]), ("overlay", blended[i])):
            path = output / f"{stem}_{suffix}.png"
            _write_png(image, path)
            written.append(path.name)
    payload: dict[str, Any] = {
        "attributions": attributions,
        "files": [str(p) for p in args.inputs],
        "names": names,
        "inputs": batch,
        "targets": targets,
        "predictions": predictions,
        "method": explainer.registry_name or args.method,
        "options": json.dumps({k: _jsonable(v) for k, v in options.items()}),
    }
    if delta is not None:
        payload["convergence_delta"] = delta.detach().cpu()
    torch.save(payload, output / "attributions.pt")
    print(
        f"explained {len(names)} input(s) with {payload['method']}: attributions "
        f"{tuple(attributions.shape)} -> {output / 'attributions.pt'}, {len(written)} PNGs in {output}"
    )
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)
