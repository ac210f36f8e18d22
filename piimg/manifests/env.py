"""The one Jinja2 environment: strict, so a missing variable is an error that
names the template and line instead of an empty string on a Pi."""

from __future__ import annotations

import functools
import json
from typing import Any

import jinja2
import yaml

from piimg.errors import RenderError


def _defined(value: Any) -> Any:
    """``value``, if nothing in it is undefined. StrictUndefined only fails when a value is
    printed or iterated; a filter that hands it to yaml or json would instead end in their
    "cannot represent" error. Here it fails as jinja2's UndefinedError naming the variable
    (also inside a list or mapping built in the template), which :func:`render` reports."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, dict):
        for key, item in value.items():
            _defined(key)
            _defined(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _defined(item)
    return value


def _to_yaml(value: Any) -> str:
    """Inline YAML scalar/flow for templates: quotes exactly when YAML needs it."""
    text = yaml.safe_dump(_defined(value), default_flow_style=True, width=10**6).strip()
    return text[:-4].strip() if text.endswith("\n...") or text.endswith(" ...") else text


def _shell_quote(value: Any) -> str:
    import shlex

    return shlex.quote(str(value))


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("piimg.manifests", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["to_yaml"] = _to_yaml
    env.filters["to_json"] = lambda v: json.dumps(_defined(v))
    env.filters["sh"] = _shell_quote
    return env


def render(template: str, **context: Any) -> str:
    """Render ``template`` (a name under ``piimg/manifests/templates``)."""
    try:
        return environment().get_template(template).render(**context)
    except jinja2.TemplateError as exc:
        where = template
        lineno = getattr(exc, "lineno", None)
        if lineno:
            where += f":{lineno}"
        raise RenderError(f"template {where}: {exc}") from exc
