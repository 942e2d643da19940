"""Reading models, images and tensors from files (TorchScript, exported programs, PNG/JPEG,
``.npy``, ``.pt``), with one-line errors that say what to do."""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import torch

from foxcem.core.batching import run_in_fixed_batches
from foxcem.core.inference import InferenceWrapper

__all__ = [
    "IMAGE_SUFFIXES",
    "TENSOR_SUFFIXES",
    "ExportedModule",
    "InputFileError",
    "check_file",
    "expected_channels",
    "first_line",
    "load_inputs",
    "load_model",
    "load_onnx",
    "read_image",
    "read_input_tensor",
    "read_tensor_file",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
TENSOR_SUFFIXES = (".npy", ".pt", ".pth")


class InputFileError(ValueError):
    """A file that is missing, unreadable or holds the wrong thing; the message is one line."""


def check_file(path: Path, what: str) -> None:
    """Raise a one-line ``InputFileError`` unless ``path`` is an existing file."""
    if not path.exists():
        raise InputFileError(f"{what} file not found: {path}")
    if not path.is_file():
        raise InputFileError(f"{what} path is not a file: {path}")


def load_model(path: Path, device: torch.device) -> Any:
    """Load a TorchScript archive, an exported program or an ONNX file (``.onnx``, run by ONNX
    Runtime behind :class:`~foxcem.InferenceWrapper`) as a callable module on ``device``.

    Raises:
        InputFileError: a missing or unreadable file (one line).
    """
    check_file(path, "model")
    if path.suffix.lower() == ".onnx":
        return load_onnx(path, device)
    how = (
        "save one with torch.export.save(torch.export.export(model, (example,)), 'model.pt2') "
        "or as ONNX (torch.onnx.export)"
    )
    if not zipfile.is_zipfile(path):
        raise InputFileError(
            f"cannot load model {path}: not a TorchScript archive nor an exported program; {how}"
        )
    with zipfile.ZipFile(path) as archive:
        entries = archive.namelist()
    if any(n.endswith("/data.pkl") for n in entries) and not any(
        n.endswith("/constants.pkl") for n in entries
    ):
        raise InputFileError(
            f"cannot load model {path}: it was saved with torch.save (a pickle, which this "
            f"command does not unpickle); {how}"
        )
    errors = []
    loaders = [("TorchScript", load_torchscript), ("exported program", load_exported)]
    if path.suffix == ".pt2":
        loaders.reverse()
    for kind, loader in loaders:
        try:
            model = loader(path, device)
        except Exception as exc:  # try the other format, then report both
            errors.append(f"{kind}: {first_line(exc)}")
            continue
        if hasattr(model, "eval"):
            model.eval()
        return model
    raise InputFileError(
        f"cannot load model {path}: not a TorchScript archive (torch.jit.save) nor an exported "
        f"program (torch.export.save) ({'; '.join(errors)})"
    )


def load_onnx(path: Path, device: torch.device) -> Any:
    """An ONNX file as a forward-only scores function (ONNX Runtime, the ``onnx`` extra)."""
    try:
        import onnxruntime
    except ImportError:
        raise InputFileError(
            f"cannot load model {path}: ONNX models need ONNX Runtime: pip install 'foxcem[onnx]'"
        ) from None
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as exc:
        raise InputFileError(f"cannot load model {path}: {first_line(exc)}") from None
    return InferenceWrapper(session)


def load_torchscript(path: Path, device: torch.device) -> Any:
    return torch.jit.load(str(path), map_location=device)


class ExportedModule(torch.nn.Module):
    """An exported program's module as an ordinary ``nn.Module``.

    Its train/eval behaviour was fixed when the program was exported (the exported module refuses
    ``.eval()``), so :meth:`train` is a no-op here; everything else is delegated. A program
    exported with a fixed batch size (``static_batch``, e.g. from a one-image example) is called
    in chunks of that size, the last one padded, so that any batch works.
    """

    def __init__(self, module: torch.nn.Module, static_batch: Optional[int] = None) -> None:
        super().__init__()
        self.module = module
        self.static_batch = static_batch

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """Call the exported module (in chunks of its fixed batch size, when it has one)."""
        if self.static_batch is None:
            return self.module(x, *args, **kwargs)
        return run_in_fixed_batches(
            lambda chunk: self.module(chunk, *args, **kwargs), x, self.static_batch
        )

    def train(self, mode: bool = True) -> ExportedModule:
        """No-op: the exported program's mode is fixed."""
        return self


def _input_shape(program: Any) -> tuple:
    """The shape of an exported program's first input (ints where fixed, symbols otherwise)."""
    names = list(getattr(program.graph_signature, "user_inputs", []))[:1]
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in names:
            value = node.meta.get("val")
            return tuple(getattr(value, "shape", ()) or ())
    return ()


def static_batch_size(program: Any) -> Optional[int]:
    """The batch size an exported program was fixed to (its first input's first dimension when
    that is a plain int), or ``None`` for a dynamic batch."""
    shape = _input_shape(program)
    first = shape[0] if shape else None
    return first if isinstance(first, int) else None


def expected_channels(model: Any) -> Optional[int]:
    """How many input channels a loaded model takes, where the file says so: an ONNX model's or
    an exported program's (N, C, H, W) input, else the first 4-D weight (a convolution's);
    ``None`` when unknown."""
    session = getattr(model, "session", None)
    if session is not None:
        shape = list(getattr(session.get_inputs()[0], "shape", None) or [])
        channels = shape[1] if len(shape) == 4 else None
        return channels if isinstance(channels, int) else None
    fixed = getattr(model, "input_channels", None)
    if isinstance(fixed, int):
        return fixed
    if isinstance(model, torch.nn.Module):
        for param in model.parameters():
            if param.dim() == 4:
                return int(param.shape[1])
            break
    return None


def load_exported(path: Path, device: torch.device) -> Any:
    logger = logging.getLogger("torch.export")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # it logs a traceback before trying its legacy format
    try:
        program = torch.export.load(str(path))
    finally:
        logger.setLevel(level)
    module = ExportedModule(program.module(), static_batch_size(program))
    shape = _input_shape(program)
    if len(shape) == 4 and isinstance(shape[1], int):
        module.input_channels = shape[1]
    if device.type != "cpu":
        module = module.to(device)
    return module


def first_line(exc: BaseException) -> str:
    """The message of ``exc`` as one readable line: its first non-empty line, without the C++
    source locations some torch and torchvision errors carry."""
    for line in str(exc).splitlines():
        line = re.sub(r"\s*\(?(Triggered internally at|Exception raised from) .*$", "", line)
        line = re.sub(r"\s*\[?\S+\.(cpp|cc|h|cu):\d+\]?", "", line).strip()
        if line:
            return line[:300]
    return type(exc).__name__


def read_image(path: Path) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        data = read_file(str(path))
        image = decode_image(data, mode=ImageReadMode.UNCHANGED)
    except Exception as exc:
        raise InputFileError(f"cannot read image {path}: {first_line(exc)}") from None
    if image.dim() == 4:  # an animated GIF: its first frame
        image = image[0]
    if image.shape[0] in (2, 4):  # drop alpha
        image = image[:-1]
    return image.float().div(255.0).unsqueeze(0)


def read_tensor_file(path: Path, what: str = "tensor") -> torch.Tensor:
    """The one tensor in a ``.npy`` (NumPy, no pickles) or ``.pt`` file, on the CPU.

    Raises:
        InputFileError: an unreadable file, or one that holds something else (one line).
    """
    try:
        if path.suffix.lower() == ".npy":
            import numpy as np

            tensor = torch.from_numpy(np.load(str(path), allow_pickle=False))
        else:
            tensor = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputFileError(f"cannot read {what} file {path}: {first_line(exc)}") from None
    if not isinstance(tensor, torch.Tensor):
        raise InputFileError(f"{path} must hold one tensor, got {type(tensor).__name__}")
    return tensor


def read_input_tensor(path: Path) -> torch.Tensor:
    tensor = read_tensor_file(path)
    if tensor.dtype == torch.uint8:
        tensor = tensor.float().div(255.0)
    elif tensor.dtype == torch.bool or tensor.is_complex():
        raise InputFileError(f"{path} holds a {tensor.dtype} tensor; expected real numbers")
    tensor = tensor.float()
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 4 or tensor.numel() == 0:
        raise InputFileError(
            f"{path} must hold an (H, W), (C, H, W) or (N, C, H, W) tensor, "
            f"got shape {tuple(tensor.shape)}"
        )
    return tensor


def load_inputs(paths: Sequence[Path]) -> tuple[list[torch.Tensor], list[str]]:
    """Read every input file: a list of (n, C, H, W) float tensors and one name per sample.

    Raises:
        InputFileError: a missing file, an unknown suffix or an unreadable file (one line).
    """
    tensors, names = [], []
    for path in paths:
        check_file(path, "input")
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            tensor = read_image(path)
        elif suffix in TENSOR_SUFFIXES:
            tensor = read_input_tensor(path)
        else:
            known = ", ".join(IMAGE_SUFFIXES + TENSOR_SUFFIXES)
            raise InputFileError(f"unsupported input {path}: expected one of {known}")
        tensors.append(tensor)
        if tensor.shape[0] == 1:
            names.append(path.name)
        else:
            names.extend(f"{path.name}[{i}]" for i in range(tensor.shape[0]))
    return tensors, names
