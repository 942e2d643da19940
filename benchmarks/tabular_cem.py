"""Tabular CEM throughput: 1,000 rows of a 30-feature table explained (PN and PP) in one call.

scikit-learn's breast-cancer data (569 rows × 30 features, shipped with scikit-learn): 1,000 rows
drawn with replacement from it, explained in one batched ``calculate_features`` call per mode with
the defaults and ``feature_range`` = the training rows,

* a torch MLP (``foxcem.demo.tables.train_table_mlp``, standardised rows) with the exact gradient;
* a scikit-learn pipeline (StandardScaler + LogisticRegression on the raw rows) behind
  ``InferenceWrapper(predict_proba, numpy=True)`` with the black-box URV estimate
  (``num_directions=20``);
* optionally (``--gbm``) a GradientBoostingClassifier the same way, with ``mu=0.3``.

Reports seconds, rows/s, the share of rows with ``found`` (the explanation holds with margin κ)
and the mean number of features changed (PN) or kept (PP).

Usage::

    python benchmarks/tabular_cem.py --output benchmarks/results/tabular_cem_cpu.json
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import report_header, write_report  # noqa: E402

from foxcem import CEMExplainer, InferenceWrapper  # noqa: E402
from foxcem.demo.tables import load_breast_cancer_split, train_table_mlp  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--gbm", action="store_true", help="also a gradient-boosting model")
    parser.add_argument("--output", default="tabular_cem_cpu.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    split = load_breast_cancer_split(seed=0)
    pick = torch.randint(
        0, len(split.x_test), (args.rows,), generator=torch.Generator().manual_seed(0)
    )
    mlp = train_table_mlp(split)
    raw_train, y_train = split.raw_train.numpy(), split.y_train.numpy()
    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(
        raw_train, y_train
    )
    models = [
        ("torch MLP", mlp, split.x_test[pick], split.x_train, {}),
        ("sklearn logistic", InferenceWrapper(logistic.predict_proba, numpy=True),
         split.raw_test[pick], split.raw_train, {"gradient": "urv", "num_directions": 20}),
    ]  # fmt: skip
    if args.gbm:
        gbm = GradientBoostingClassifier(random_state=0).fit(raw_train, y_train)
        models.append(("sklearn GBM", InferenceWrapper(gbm.predict_proba, numpy=True),
                       split.raw_test[pick], split.raw_train,
                       {"gradient": "urv", "num_directions": 20, "mu": 0.3}))  # fmt: skip
    report = report_header("tabular_cem", torch.device("cpu"))
    report["rows"] = []
    print(f"{'model':17} {'gradient':8} {'mode':4} {'rows':>5} {'seconds':>8} {'rows/s':>7} "
          f"{'found':>6} {'features':>8}")  # fmt: skip
    for name, model, x, reference, options in models:
        for mode in ("PN", "PP"):
            explainer = CEMExplainer()
            start = time.perf_counter()
            delta = explainer.calculate_features(
                model, x, mode=mode, feature_range=reference, **options
            )
            seconds = time.perf_counter() - start
            found = float(explainer.meta_data["found"].float().mean())
            features = float((delta != 0).sum(dim=1).float().mean())
            row = {"model": name, "gradient": options.get("gradient", "autograd"), "mode": mode,
                   "rows": len(x), "seconds": seconds, "rows_per_s": len(x) / seconds,
                   "found": found, "mean_features": features}  # fmt: skip
            report["rows"].append(row)
            print(f"{name:17} {row['gradient']:8} {mode:4} {len(x):5d} {seconds:8.1f} "
                  f"{row['rows_per_s']:7.1f} {found:6.1%} {features:8.1f}")  # fmt: skip
    write_report(report, args.output)


if __name__ == "__main__":
    main()
