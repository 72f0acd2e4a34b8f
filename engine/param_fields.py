"""Each job kind's parameters described for a front end: the CLI flags and the console's form.

Why its own module: `engine.task_params` declares the parameters (pydantic models, the only
declaration); the CLI (console.commands.params_cli) and the start-run form (console.screens.start_run)
need each field as a value type, list or single, choices, default and help text, and text converted
and checked against the same model. Both read `fields(kind)`, so a field added to a model reaches
both with no second list. Pure (pydantic and typing only), like `engine.task_params`.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from engine.task_params import Params, model_for


@dataclass(frozen=True)
class ParamField:
    """One parameter as a front end shows it: the value type, whether a list is taken, choices, help."""

    name: str
    value_type: type  # int, float, str or bool
    many: bool  # a list is accepted
    single: bool  # a single value is accepted
    choices: tuple[str, ...] | None
    default: Any
    help: str
    hidden: bool
    model: type[Params] = field(repr=False)

    def convert(self, text: str) -> Any:
        """A value from user text ("8", "1e-4", "8,16", "true"), checked against the field's type and
        bounds; ValueError says what was expected."""
        raw = text.strip()
        parts = [p for p in raw.replace(",", " ").split() if p] if self.many else [raw]
        vals = [self.element(p) for p in parts]
        value = vals[0] if self.single and len(vals) == 1 else vals
        self.check(value)
        return value

    def check(self, value: Any) -> None:
        """ValueError naming the parameter when `value` does not fit its type or bounds."""
        self.model.of({self.name: value})  # the other fields keep their defaults

    def element(self, text: str) -> Any:
        """One value (one list item) from text, by the field's scalar type and choices."""
        if self.choices is not None and text not in self.choices:
            raise ValueError(f"{self.name} must be one of {', '.join(self.choices)}, got {text!r}")
        if self.value_type is bool:
            low = text.lower()
            if low not in ("true", "false", "yes", "no", "1", "0"):
                raise ValueError(f"{self.name} must be true or false, got {text!r}")
            return low in ("true", "yes", "1")
        try:
            return self.value_type(text)
        except ValueError:
            what = {int: "a whole number", float: "a number"}.get(self.value_type, "text")
            raise ValueError(f"{self.name} must be {what}, got {text!r}") from None


def _scalar(tp: Any) -> tuple[type, tuple[str, ...] | None]:
    if get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) is Literal:
        return str, tuple(str(a) for a in get_args(tp))
    return (tp if tp in (int, float, str, bool) else str), None


def fields(kind: str) -> list[ParamField]:
    """Every parameter of `kind`, described for the CLI and the console form: the kind's own fields
    first (most specific class first, each in declaration order), then the inherited ones."""
    model = model_for(kind)
    order = list(dict.fromkeys(n for cls in model.__mro__ for n in getattr(cls, "__annotations__", {})
                               if n in model.model_fields))
    out = []
    for name in order:
        f = model.model_fields[name]
        tp = f.annotation
        opts = list(get_args(tp)) if get_origin(tp) in (Union, types.UnionType) else [tp]
        opts = [o for o in opts if o is not type(None)]
        lists = [get_args(o)[0] for o in opts if get_origin(o) is list]
        scalars = [o for o in opts if get_origin(o) is not list]
        base, choices = _scalar((scalars or lists or [str])[0])
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        listed = extra.get("choices")
        if choices is None and isinstance(listed, list):
            choices = tuple(str(c) for c in listed)
        hidden = (bool(f.alias and f.alias.startswith("_")) or bool(extra.get("hidden"))
                  or any(get_origin(o) is dict for o in opts))
        out.append(ParamField(name=f.alias or name, value_type=base, many=bool(lists), single=bool(scalars),
                              choices=choices, default=f.default, help=f.description or "", hidden=hidden,
                              model=model))
    return out


__all__ = ["ParamField", "fields"]
