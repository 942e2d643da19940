"""Every public name keeps its old import path (the layout moved modules, not names)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

#: (old module, name, module that now holds it)
MOVED = [
    *[("foxcem.base", n, "foxcem.core.explainer") for n in (
        "Explainer", "validate_result", "predict_scores", "split_convergence_delta")],
    *[("foxcem.checks", n, "foxcem.core.checks") for n in (
        "TargetLike", "check_tensor", "model_device", "check_model", "check_same_device",
        "check_scores", "check_target", "check_positive_int", "check_choice")],
    *[("foxcem.model_state", n, "foxcem.core.model_state") for n in (
        "preserve_model_state", "gradients_enabled")],
    *[("foxcem.registry", n, "foxcem.core.registry") for n in (
        "register_explainer", "get_explainer", "available_explainers", "resolve_explainer",
        "get_explainer_class")],
    *[("foxcem.explainers", n, "foxcem.attribution") for n in (
        "CaptumCall", "CaptumExplainer", "LayerCaptumExplainer", "get_last_conv_layer",
        "IntegratedGradientsCVExplainer", "LayerIntegratedGradientsCVExplainer",
        "GradientCVExplainer", "SaliencyCVExplainer", "InputXGradientCVExplainer",
        "LayerInputXGradientCVExplainer", "GuidedBackpropCVExplainer",
        "DeconvolutionCVExplainer", "DeepLIFTCVExplainer", "LayerDeepLIFTCVExplainer",
        "DeepLIFTSHAPCVExplainer", "LayerDeepLIFTSHAPCVExplainer", "GradientSHAPCVExplainer",
        "LayerGradientSHAPCVExplainer", "OcclusionCVExplainer", "LayerGradCAMCVExplainer",
        "GuidedGradCAMCVExplainer", "LRPCVExplainer", "LayerLRPCVExplainer",
        "LayerConductanceCVExplainer", "NoiseTunnelCVExplainer")],
    ("foxcem.explainers.integrated_gradients", "IntegratedGradientsCVExplainer",
     "foxcem.attribution.integrated_gradients"),
    ("foxcem.explainers.layers", "get_last_conv_layer", "foxcem.attribution.layers"),
    ("foxcem.explainers._captum", "resolve_baselines", "foxcem.attribution.baselines"),
    ("foxcem.explainers._captum", "isolated_rng", "foxcem.core.seeding"),
    ("foxcem.callbacks", "ExplanationCallback", "foxcem.integrations.lightning.callback"),
    *[("foxcem.dataset", n, "foxcem.io.shards") for n in (
        "ShardInfo", "MANIFEST_NAME", "load_attributions", "read_manifest", "scan_shards")],
    ("foxcem.dataset", "IndexedDataset", "foxcem.io.datasets"),
    ("foxcem.dataset", "explain_dataset", "foxcem.integrations.lightning.explain_dataset"),
    *[("foxcem.lightning", n, "foxcem.integrations.lightning.explain_module") for n in (
        "ExplainModule", "split_indexed_batch")],
    ("foxcem.lightning", "AttributionWriter", "foxcem.integrations.lightning.writer"),
    ("foxcem.lightning.writer", "AttributionWriter", "foxcem.integrations.lightning.writer"),
    *[("foxcem.visualization", n, "foxcem.viz.images") for n in (
        "SIGNS", "normalize_attribution", "apply_colormap", "attribution_to_rgb", "overlay",
        "to_uint8", "enlarge")],
    ("foxcem.visualization", "plot_explanation_grid", "foxcem.viz.grid"),
    ("foxcem.visualization", "plot_savepoints", "foxcem.viz.cem_plots"),
    ("foxcem.visualization", "plot_pp_pn", "foxcem.viz.cem_plots"),
    *[("foxcem.metrics", n, "foxcem.metrics.perturbation") for n in (
        "PerturbationCurve", "perturbation_curve", "deletion_curve", "insertion_curve",
        "deletion_auc", "insertion_auc")],
    ("foxcem.metrics", "completeness_gap", "foxcem.metrics.completeness"),
    ("foxcem.metrics", "gini_index", "foxcem.metrics.sparsity"),
    ("foxcem.metrics", "quantus_explain_func", "foxcem.integrations.quantus"),
    ("foxcem.cem.gradients", "AutogradGradient", "foxcem.cem.gradient_source"),
    ("foxcem.cem.gradients", "URVGradientEstimator", "foxcem.cem.urv"),
    ("foxcem.cem.gradients", "Sampler", "foxcem.cem.urv"),
    ("foxcem.cem.optimizers", "exp_grad_prox", "foxcem.cem.prox"),
    ("foxcem.cem.loss", "CEMEvaluation", "foxcem.cem.evaluation"),
    ("foxcem.cem.loss", "check_mode", "foxcem.cem.evaluation"),
    ("foxcem.cli.explain", "load_model", "foxcem.io.files"),
    ("foxcem.cli.explain", "parse_options", "foxcem.cli.options"),
    ("foxcem.demo.run", "format_table", "foxcem.demo.report"),
    ("foxcem.demo.run", "load_or_train_model", "foxcem.demo.model"),
    ("foxcem.demo.run", "DemoConfig", "foxcem.demo.config"),
]  # fmt: skip


@pytest.mark.parametrize("old, name, new", MOVED, ids=[f"{o}.{n}" for o, n, _ in MOVED])
def test_old_path_gives_the_same_object(old: str, name: str, new: str) -> None:
    if "lightning" in new or old in ("foxcem.callbacks",):
        pytest.importorskip("lightning.pytorch")
    legacy = getattr(importlib.import_module(old), name)
    assert legacy is getattr(importlib.import_module(new), name)


def test_from_import_star_and_submodule_imports_of_old_paths() -> None:
    code = (
        "from foxcem.explainers import *\n"
        "assert IntegratedGradientsCVExplainer.registry_name == 'integrated_gradients'\n"
        "import foxcem.explainers.saliency as s, foxcem.attribution.saliency as t\n"
        "assert s.SaliencyCVExplainer is t.SaliencyCVExplainer\n"
        "import foxcem.visualization\n"
        "assert callable(foxcem.visualization.overlay)\n"
        "from foxcem.cem import wright_omega\n"
        "assert callable(wright_omega) and wright_omega.__module__ == 'foxcem.cem.wright_omega'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_an_unknown_name_on_an_old_path_says_where_it_looked() -> None:
    import foxcem.visualization

    with pytest.raises(AttributeError, match="foxcem.viz"):
        foxcem.visualization.no_such_name  # noqa: B018
