"""What the command line says about the methods: the list, and each one's options."""

from __future__ import annotations

import argparse
import inspect
from typing import Any

__all__ = ["HelpWithMethod", "ListMethods", "describe_methods", "method_options"]


def method_options(name: str) -> list[tuple[str, Any]]:
    """(option, default) of a registered method's ``calculate_features`` options."""
    from foxcem.core.registry import get_explainer

    explainer = get_explainer(name)
    function = getattr(explainer, "_prepare", None) or explainer.create_explainer
    parameters = inspect.signature(function).parameters.values()
    return [
        (p.name, p.default)
        for p in parameters
        if p.kind is p.KEYWORD_ONLY and p.name not in ("device", "callback")
    ]


def _summary(name: str) -> str:
    from foxcem.core.registry import get_explainer_class

    doc = inspect.getdoc(get_explainer_class(name)) or ""
    return doc.split("\n", 1)[0].rstrip(".")


def describe_methods() -> str:
    """Every registered method: name, one line of description, its options."""
    from foxcem.core.registry import aliases_of, available_explainers, get_explainer_class

    lines = []
    for name in available_explainers():
        note = (
            " (not from the CLI: hooks modules)" if get_explainer_class(name).hooks_modules else ""
        )
        aliases = aliases_of(name)
        also = f" (also: {', '.join(aliases)})" if aliases else ""
        lines.append(f"{name}{also}{note}\n    {_summary(name)}")
        options = ", ".join(option for option, _ in method_options(name))
        lines.append(f"    options: {options}")
    return "\n".join(lines)


def _options_help(name: str) -> str:
    rows = [f"options of {name} (--option KEY=VALUE; defaults shown):"]
    for option, default in method_options(name):
        shown = "required" if default is inspect.Parameter.empty else repr(default)
        rows.append(f"  {option} = {shown}")
    return "\n".join(rows)


class ListMethods(argparse.Action):
    """``--list-methods``: print every method with its options, then exit."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(describe_methods())
        parser.exit()


class HelpWithMethod(argparse.Action):
    """``--help``: the usual help, and after ``--method NAME`` that method's options."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, *args: Any
    ) -> None:
        parser.print_help()
        method = getattr(namespace, "method", None)
        if method:
            try:
                print("\n" + _options_help(method))
            except ValueError as exc:
                print(f"\n{exc}")
        parser.exit()
