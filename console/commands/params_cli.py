"""Command-line flags generated from a job kind's parameter model (engine.task_params, described by
engine.param_fields).

Why generated: the model is the one declaration of a kind's parameters; a command adds `--name` for
every field of it (types, choices, defaults and help from the model), so a new parameter reaches the
CLI without a second list. Each value is checked against its field while argparse parses it (a usage
error names the flag), and the whole set again by `JobSpec.create`.

`engine.task_params` and `engine.param_fields` are pure (pydantic only), so `--help` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection, Mapping
from typing import Any

from engine.param_fields import ParamField, fields


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _type(f: ParamField) -> Any:
    def parse(text: str) -> Any:
        try:
            value = f.convert(text) if not f.many else f.element(text)
            f.check(value if not f.many or f.single else [value])
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    parse.__name__ = f.value_type.__name__  # argparse names the type in its "invalid ... value" message
    return parse


def add_param_flags(p: argparse.ArgumentParser, kind: str, *, skip: Collection[str] = (),
                    aliases: Mapping[str, str] | None = None) -> None:
    """`--name` for every shown parameter of `kind` (not in `skip`); `aliases` adds a second spelling.

    Every flag defaults to None, meaning "not given": the model's default applies (shown in the help).
    """
    for f in fields(kind):
        if f.hidden or f.name in skip:
            continue
        names = [flag(f.name)] + ([aliases[f.name]] if aliases and f.name in aliases else [])
        default = f" (default {_show(f.default)})" if f.default not in (None, False, []) else ""
        kw: dict[str, Any] = {"dest": f.name, "default": None, "help": (f.help + default).replace("%", "%%") or None}
        if f.value_type is bool and not f.many:
            # a flag; with no default (the task decides) also --no-NAME to say false
            action = argparse.BooleanOptionalAction if f.default is None else "store_true"
            p.add_argument(*names, action=action, **kw)
            continue
        if f.choices is not None:
            kw["choices"] = f.choices
        if f.many:
            kw["nargs"] = "+"
            kw["metavar"] = f.name.upper()
        p.add_argument(*names, type=_type(f), **kw)


def _show(v: Any) -> str:
    return " ".join(map(str, v)) if isinstance(v, list) else str(v)


def params_from_args(args: argparse.Namespace, kind: str, **extra: Any) -> dict[str, Any]:
    """The spec params of `kind` the user gave (flags left unset are omitted), plus `extra` (None dropped)."""
    out: dict[str, Any] = {}
    for f in fields(kind):
        v = getattr(args, f.name, None)
        if v is None or (f.value_type is bool and v is False and f.default is False):
            continue
        if f.many and isinstance(v, list) and len(v) == 1 and f.single:
            v = v[0]
        out[f.name] = v
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


__all__ = ["add_param_flags", "flag", "params_from_args"]
