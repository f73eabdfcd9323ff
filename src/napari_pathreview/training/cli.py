"""``pathreview train RECIPE.yaml [--set k=v ...] [--resume RUN [--rescore]] [--from-reviews [DB]]
[--out D]``.

Imports torch only inside the handler so ``pathreview --help`` stays fast.
"""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Attach the ``train`` sub-command."""
    parser = subparsers.add_parser(
        "train",
        help="train, evaluate and register a model from a YAML recipe",
        description="Train as a recipe says; writes a run folder (metrics.json, plots, "
        "checkpoints) and registers the chosen weights with a complete model card.",
    )
    parser.add_argument("recipe", nargs="?", help="recipe YAML (a file, or a name from training/)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set optim.lr=1e-4 --set phases.*.epochs=1",
    )
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run folder")
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="with --resume: score a finished lesion-aware run again from its saved fold models "
        "and embeddings (after the scoring rules changed); nothing is trained",
    )
    parser.add_argument(
        "--from-reviews",
        nargs="?",
        const="",
        default=None,
        metavar="DB",
        help="train on the review store's export (default store, or a SQLite path / database URL)",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="parent folder of the run (default $PATHREVIEW_HOME/runs)"
    )
    parser.set_defaults(handler=_train)


def find_recipe(text: str):
    """A path as given, else a recipe shipped with the package (``demo`` → training/demo.yaml)."""
    from pathlib import Path

    from napari_pathreview.training.recipe import RecipeError

    path = Path(text)
    if path.is_file():
        return path
    shipped = Path(__file__).resolve().parent / "recipes"
    for candidate in (shipped / text, shipped / f"{text}.yaml"):
        if candidate.is_file():
            return candidate
    raise RecipeError(f"recipe {text!r} not found (neither a file nor one of {shipped})")


def _check_folders(args: argparse.Namespace) -> None:
    """``--out`` must be (or become) a writable folder; ``--resume`` an existing one."""
    from pathlib import Path

    from napari_pathreview import preflight
    from napari_pathreview.training.recipe import RecipeError

    if args.out:
        preflight.output_folder(args.out, "--out", create=False)
    if args.resume and not Path(args.resume).is_dir():
        raise RecipeError(f"--resume {args.resume}: no such run folder")
    if args.rescore and not args.resume:
        raise RecipeError("--rescore re-reads a finished run: give --resume RUN_DIR")


def _train(args: argparse.Namespace) -> int:
    from napari_pathreview.training.recipe import load_recipe

    recipe = find_recipe(args.recipe) if args.recipe else None
    _check_folders(args)
    if recipe is not None:
        load_recipe(recipe, args.overrides)  # every --set checked before torch loads
    from napari_pathreview.training.run import run_recipe

    result = run_recipe(
        recipe,
        args.overrides,
        out_dir=args.out,
        resume=args.resume,
        from_reviews=args.from_reviews,
        rescore=args.rescore,
    )
    test = result.metrics["test"]
    print(f"run folder: {result.run_dir}")
    print(
        f"protocol:   {result.metrics['split_protocol']}"
        + ("  [LEAKY: image-level split]" if result.metrics["leaky"] else "")
    )
    print(scored_on_line(result.metrics))
    _print_table(test, ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "pr_auc", "ece"))
    if "kfold_summary" in result.metrics:
        print(fold_summary_line(result.metrics["kfold_summary"]))
    if "bilateral_decision" in result.metrics:
        print("two-film decision (each film against the woman's other film):")
        _print_table(
            result.metrics["bilateral_decision"]["test"],
            ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "pr_auc"),
        )
    if result.registered:
        print(f"registered: {result.registered}")
    return 0


def scored_on_line(metrics: dict) -> str:
    """What the table's figures were computed on and decided at: the pooled out-of-fold test
    images of k folds read like one test part, and a binary run's accuracy, balanced accuracy
    and F1 are at the validation threshold, not 0.5; neither was printed."""
    test, folds = metrics["test"], len(metrics.get("folds") or [])
    where = f"pooled out of {folds} folds" if test.get("pooled_out_of_fold") else "one test part"
    threshold = metrics.get("threshold")
    if threshold is None:
        decision = "argmax"
    else:
        rule = metrics.get("threshold_rule") or "card"
        decision = f"P({metrics['classes'][-1]}) >= {threshold:.3f} ({rule})"
    return f"test:       {test.get('n')} images, {where}; decision {decision}; ece lower is better"


def fold_summary_line(summary: dict, names=("balanced_accuracy", "f1_macro", "roc_auc")) -> str:
    """The per-fold figures as people read them: ``roc_auc 0.514 ± 0.201`` (was raw JSON)."""
    parts, n_folds = [], 0
    for name in names:
        entry = summary.get(name) or {}
        mean, sd = entry.get("mean"), entry.get("sd")
        n_folds = max(n_folds, entry.get("n_folds") or 0)
        parts.append(f"{name} " + ("n/a" if mean is None else f"{mean:.3f} ± {sd:.3f}"))
    return f"per fold (mean ± sd over {n_folds} folds): " + ", ".join(parts)


def _print_table(test: dict, names: tuple[str, ...]) -> None:
    """Pooled test figures with their bootstrap CIs, one metric per line; an interval resting
    on few of the resamples (``ci_counts.thin_intervals``) is marked, with a footnote."""
    from napari_pathreview.training.ci_counts import USABLE_SHARE, thin_intervals

    unit = test.get("ci_resampled")
    thin = set(thin_intervals(test)) & set(names)
    print(f"{'metric':<20}{'value':>8}   95% CI" + (f" (bootstrap over {unit})" if unit else ""))
    for name in names:
        value, (low, high) = test.get(name), test["ci95"].get(name, (None, None))
        shown = "n/a" if value is None else f"{value:.3f}"
        ci = "" if low is None else f"[{low:.3f}, {high:.3f}]"
        mark = f" * {test['ci_n_resamples'][name]}" if name in thin else ""
        print(f"{name:<20}{shown:>8}   {ci}{mark}")
    if thin:
        print(
            f"* the interval rests on this many of the {test['ci_n_drawn']} resamples (under "
            f"{USABLE_SHARE:.0%}); the others lacked a class the metric needs"
        )
