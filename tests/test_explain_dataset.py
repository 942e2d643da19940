"""Dataset-scale explanation on Lightning: sharded, atomic, resumable, and the same under DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

pytest.importorskip("lightning.pytorch")
pytest.importorskip("safetensors")
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import foxcem  # noqa: E402
from foxcem.attribution import IntegratedGradientsCVExplainer  # noqa: E402
from foxcem.cli import main as cli_main  # noqa: E402
from foxcem.demo.digits import DigitsSplit  # noqa: E402
from foxcem.integrations.lightning.explain_dataset import explain_dataset  # noqa: E402
from foxcem.io import IndexedDataset, load_attributions, read_manifest  # noqa: E402

N = 40
BATCH = 8
OPTIONS = {"n_steps": 8, "return_convergence_delta": True}
TRAINER = {"accelerator": "cpu", "devices": 1}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class FailingIG(IntegratedGradientsCVExplainer):
    """Integrated Gradients that counts its calls and raises on call ``fail_at`` (a crash)."""

    def __init__(self, fail_at: int = 0) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.calls: list[int] = []

    def calculate_features(self, model: Any, input_data: torch.Tensor, *args: Any, **kwargs: Any):
        self.calls.append(len(input_data))
        if len(self.calls) == self.fail_at:
            raise RuntimeError("simulated crash")
        return super().calculate_features(model, input_data, *args, **kwargs)


@pytest.fixture(scope="module")
def data(digits_split: DigitsSplit, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A TorchScript model file, an inputs file and labels file, and the direct result."""
    root = tmp_path_factory.mktemp("dataset")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Net().eval()
    x, y = digits_split.x_test[:N].clone(), digits_split.y_test[:N].clone()
    scripted = torch.jit.script(model)
    torch.jit.save(scripted, str(root / "model.pt"))
    torch.save(x, root / "inputs.pt")
    torch.save(y, root / "labels.pt")
    attributions, delta = foxcem.get_explainer("integrated_gradients").calculate_features(
        model, x, None, **OPTIONS
    )
    return {
        "root": root,
        "model": model,
        "scripted": scripted,
        "x": x,
        "y": y,
        "attributions": attributions,
        "delta": delta,
    }


def _loader(data: dict[str, Any]) -> DataLoader:
    return DataLoader(IndexedDataset(TensorDataset(data["x"], data["y"])), batch_size=BATCH)


def _check_complete(output: Path, data: dict[str, Any], world_size: int) -> dict[str, Any]:
    manifest = read_manifest(output)
    assert manifest["complete"] is True
    assert manifest["num_samples"] == manifest["expected_num_samples"] == N
    assert manifest["duplicates"] == 0 and manifest["num_missing"] == 0
    assert manifest["world_size"] == world_size
    assert manifest["config"]["explainer"] == "integrated_gradients"
    assert manifest["keys"] == ["attributions", "delta", "indices", "targets"]
    assert manifest["attribution_shape"] == [1, 8, 8]
    assert sum(s["num_samples"] for s in manifest["shards"]) == N  # every sample exactly once
    assert sorted(p.name for p in output.glob("shard-*")) == sorted(
        s["file"] for s in manifest["shards"]
    )
    assert not list(output.glob(".*.tmp"))
    return manifest


def test_single_process_matches_direct_call_and_resumes_after_a_crash(
    data: dict[str, Any], tmp_path: Path
) -> None:
    # A complete run equals explaining the whole tensor at once.
    reference = tmp_path / "reference"
    manifest = explain_dataset(
        data["model"], _loader(data), "integrated_gradients", TRAINER, reference, OPTIONS
    )
    assert manifest == _check_complete(reference, data, world_size=1)
    assert len(manifest["shards"]) == N // BATCH
    indices, attributions = load_attributions(reference, require_complete=True)
    assert torch.equal(indices, torch.arange(N))
    torch.testing.assert_close(attributions, data["attributions"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(load_attributions(reference, "delta")[1], data["delta"])
    predicted = data["model"](data["x"]).argmax(1)
    assert torch.equal(load_attributions(reference, "targets")[1], predicted)

    # A run that crashes on its 4th batch leaves 3 complete shards (plus a stray temporary
    # file, as a kill during a write would), and no manifest.
    output = tmp_path / "resumed"
    failing = FailingIG(fail_at=4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        explain_dataset(data["model"], _loader(data), failing, TRAINER, output, OPTIONS)
    shards = sorted(output.glob("shard-*.safetensors"))
    assert len(shards) == 3 and not (output / "manifest.json").exists()
    stray = output / f".{shards[0].name}.12345.deadbeef.tmp"
    stray.write_bytes(b"half a shard")
    with pytest.raises(FileNotFoundError, match="manifest"):
        load_attributions(output, require_complete=True)
    assert torch.equal(load_attributions(output)[0], torch.arange(3 * BATCH))
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in shards}

    # The restart explains only the two missing batches and leaves finished shards alone.
    resumed = FailingIG()
    manifest = explain_dataset(data["model"], _loader(data), resumed, TRAINER, output, OPTIONS)
    assert resumed.calls == [BATCH, BATCH]
    assert not stray.exists()
    for name, stat in before.items():
        path = output / name
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == stat
    _check_complete(output, data, world_size=1)
    for key in ("attributions", "delta", "targets"):
        a, b = load_attributions(output, key), load_attributions(reference, key)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), key

    # A third run finds nothing to do.
    idle = FailingIG()
    explain_dataset(data["model"], _loader(data), idle, TRAINER, output, OPTIONS)
    assert idle.calls == []

    # Another configuration in the same folder is refused; so is a folder with shards and
    # resume=False.
    with pytest.raises(ValueError, match="another explanation configuration"):
        explain_dataset(
            data["model"], _loader(data), "integrated_gradients", TRAINER, output, {"n_steps": 4}
        )
    with pytest.raises(FileExistsError):
        explain_dataset(
            data["model"], _loader(data), resumed, TRAINER, output, OPTIONS, resume=False
        )


def test_resume_with_another_batch_size_explains_only_the_missing_samples(
    data: dict[str, Any], tmp_path: Path
) -> None:
    """Finished work is recognised per sample, whatever the new run's batches look like."""
    output = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated crash"):
        explain_dataset(data["model"], _loader(data), FailingIG(3), TRAINER, output, OPTIONS)
    resumed = FailingIG()
    loader = DataLoader(IndexedDataset(TensorDataset(data["x"], data["y"])), batch_size=6)
    explain_dataset(data["model"], loader, resumed, TRAINER, output, OPTIONS)
    assert sum(resumed.calls) == N - 2 * BATCH
    _check_complete(output, data, world_size=1)
    indices, attributions = load_attributions(output)
    assert torch.equal(indices, torch.arange(N))
    torch.testing.assert_close(attributions, data["attributions"], rtol=1e-5, atol=1e-6)


def _ddp_command(root: Path, output: Path) -> list[str]:
    """``foxcem explain-dataset`` on 2 CPU processes (gloo) with DDP, as a subprocess."""
    return [
        sys.executable,
        "-m",
        "foxcem.cli.explain_dataset",
        str(root / "model.pt"),
        str(root / "inputs.pt"),
        "--labels",
        str(root / "labels.pt"),
        "--target",
        "label",
        "--method",
        "integrated_gradients",
        "--option",
        "n_steps=8",
        "--option",
        "return_convergence_delta=True",
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--batch-size",
        str(BATCH // 2),
        "--format",
        "torch",
        "--output",
        str(output),
    ]


@pytest.mark.slow
def test_ddp_two_processes_equal_a_single_process_run(data: dict[str, Any], tmp_path: Path) -> None:
    """The CLI with strategy=ddp on 2 CPU processes (gloo); Lightning launches rank 1 itself."""
    reference = tmp_path / "reference"
    explain_dataset(
        data["scripted"],
        _loader(data),
        "integrated_gradients",
        TRAINER,
        reference,
        OPTIONS,
        target="label",
        file_format="torch",
    )
    output = tmp_path / "ddp"
    root = data["root"]
    command = _ddp_command(root, output)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"explained {N} of {N} samples (complete)" in done.stdout

    manifest = _check_complete(output, data, world_size=2)
    assert {s["rank"] for s in manifest["shards"]} == {0, 1}
    assert len(manifest["shards"]) == N // (BATCH // 2)
    parts = []
    for shard in manifest["shards"]:
        payload = torch.load(output / shard["file"], weights_only=True)
        parts.append(payload["tensors"]["indices"])
    everything = torch.cat(parts)
    assert torch.equal(everything.sort().values, torch.arange(N))  # each index exactly once

    for key in ("attributions", "delta", "targets"):
        index, values = load_attributions(output, key)
        ref_index, ref_values = load_attributions(reference, key)
        assert torch.equal(index, ref_index)
        torch.testing.assert_close(values, ref_values, rtol=1e-5, atol=1e-6)
    assert torch.equal(load_attributions(output, "targets")[1], data["y"])


def test_indexed_dataset_and_loader_checks(data: dict[str, Any], tmp_path: Path) -> None:
    assert IndexedDataset(data["x"])[3][1] == 3
    x, y, i = IndexedDataset(TensorDataset(data["x"], data["y"]))[5]
    assert torch.equal(x, data["x"][5]) and int(y) == int(data["y"][5]) and i == 5
    batch = next(iter(_loader(data)))
    assert len(batch) == 3 and torch.equal(batch[2], torch.arange(BATCH))
    plain = DataLoader(TensorDataset(data["x"], data["y"]), batch_size=BATCH)
    with pytest.raises(TypeError, match="IndexedDataset"):
        explain_dataset(data["model"], plain, "gradient", TRAINER, tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        load_attributions(tmp_path / "nothing")
    assert foxcem.explain_dataset is explain_dataset
    assert foxcem.load_attributions is load_attributions


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.pt", "inputs.pt"], "model file not found"),
        (["model.pt", "missing.pt"], "inputs file not found"),
        (["model.pt", "inputs.pt", "--method", "nope"], "unknown explainer"),
        (["model.pt", "labels.pt"], "expected real numbers"),
        (["model.pt", "inputs.pt", "--labels", "inputs.pt"], "integer class indices"),
        (["model.pt", "inputs.pt", "--target", "label"], "--target label needs --labels"),
        (["model.pt", "inputs.pt", "--batch-size", "0"], "--batch-size"),
        (["model.pt", "inputs.pt", "--option", "=3"], "--option"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_code_2(
    args: list[str],
    message: str,
    data: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(data["root"])
    assert cli_main(["explain-dataset", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("foxcem explain-dataset: error:"), err
    assert message in err[0]


def test_manifest_is_json_and_written_atomically(data: dict[str, Any], tmp_path: Path) -> None:
    output = tmp_path / "out"
    explain_dataset(
        data["model"],
        data["x"][:10],
        "gradient",
        TRAINER,
        output,
        {"aggregate": "abs_max"},
        batch_size=4,
    )
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["complete"] and manifest["num_shards"] == 3
    assert manifest["keys"] == ["attributions", "indices", "targets"]
    _, attributions = load_attributions(output)
    direct = foxcem.get_explainer("gradient").calculate_features(
        data["model"], data["x"][:10], aggregate="abs_max"
    )
    torch.testing.assert_close(attributions, direct)
    assert sorted(p.name for p in output.iterdir() if p.name.startswith(".")) == []


#: Runs ``explain_dataset`` on 2 DDP processes; on rank 0's 3rd batch the explainer SIGKILLs the
#: whole process group, both ranks at once, as a lost machine would: no cleanup code runs.
KILLED_RUN = """
import os, signal, sys
import torch
from torch.utils.data import DataLoader, TensorDataset
from foxcem.integrations.lightning.explain_dataset import explain_dataset
from foxcem.io import IndexedDataset
from foxcem.attribution import IntegratedGradientsCVExplainer


class KilledIG(IntegratedGradientsCVExplainer):
    calls = 0

    def calculate_features(self, *args, **kwargs):
        KilledIG.calls += 1
        if KilledIG.calls == 3 and os.environ.get("LOCAL_RANK", "0") == "0":
            os.killpg(os.getpgrp(), signal.SIGKILL)
        return super().calculate_features(*args, **kwargs)


root, output, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
x, y = torch.load(os.path.join(root, "inputs.pt")), torch.load(os.path.join(root, "labels.pt"))
explain_dataset(
    torch.jit.load(os.path.join(root, "model.pt")),
    DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=batch),
    KilledIG(),
    {"accelerator": "cpu", "devices": 2, "strategy": "ddp"},
    output,
    {"n_steps": 8, "return_convergence_delta": True},
    target="label",
    file_format="torch",
)
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")
def test_ddp_run_killed_midway_resumes_to_the_same_result(
    data: dict[str, Any], tmp_path: Path
) -> None:
    """A real SIGKILL of both DDP ranks, then the same CLI command as a fresh DDP run."""
    reference = tmp_path / "reference"
    explain_dataset(
        data["scripted"], _loader(data), "integrated_gradients", TRAINER, reference, OPTIONS,
        target="label", file_format="torch",
    )  # fmt: skip
    output = tmp_path / "killed"
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    killed = subprocess.run(
        [sys.executable, str(script), str(data["root"]), str(output), str(BATCH // 2)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        start_new_session=True,  # its own process group, so the kill cannot reach pytest
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    survivors = list(output.glob("shard-*"))
    assert 2 <= len(survivors) < N // (BATCH // 2)  # rank 0 wrote its first two batches
    assert not (output / "manifest.json").exists()
    before = {p.name: p.stat().st_mtime_ns for p in survivors}

    done = subprocess.run(
        _ddp_command(data["root"], output), cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    _check_complete(output, data, world_size=2)
    for path in survivors:  # finished shards are kept, not recomputed
        assert path.stat().st_mtime_ns == before[path.name]
    for key in ("attributions", "delta", "targets"):
        index, values = load_attributions(output, key)
        ref_index, ref_values = load_attributions(reference, key)
        assert torch.equal(index, ref_index)
        torch.testing.assert_close(values, ref_values, rtol=1e-5, atol=1e-6)


def test_a_resumed_run_recomputes_a_damaged_shard(data: dict[str, Any], tmp_path: Path) -> None:
    from foxcem.io.shards import DamagedFileError

    output = tmp_path / "damaged"
    explain_dataset(data["model"], _loader(data), "integrated_gradients", TRAINER, output, OPTIONS)
    shards = sorted(output.glob("shard-*.safetensors"))
    victim = shards[1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])  # truncated
    garbage = output / "shard-000000999-ffffffffffffffff.safetensors"
    garbage.write_bytes(b"not a shard at all")
    with pytest.raises(DamagedFileError, match=victim.name):
        load_attributions(output)
    # The resumed run reports the damage, recomputes that batch only and is complete again.
    resumed = FailingIG()
    with pytest.warns(UserWarning, match="unreadable shard"):
        manifest = explain_dataset(data["model"], _loader(data), resumed, TRAINER, output, OPTIONS)
    assert resumed.calls == [BATCH]
    assert manifest["complete"] is True and manifest["num_samples"] == N
    assert (output / (garbage.name + ".damaged")).exists() and not garbage.exists()
    indices, attributions = load_attributions(output, require_complete=True)
    assert torch.equal(indices, torch.arange(N))
    torch.testing.assert_close(attributions, data["attributions"], rtol=1e-5, atol=1e-6)
    (output / "manifest.json").write_text("{ truncated")
    with pytest.raises(DamagedFileError, match="manifest.json is damaged"):
        load_attributions(output, require_complete=True)
