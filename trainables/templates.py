"""Text templates ("This is a photo of a {}"): checked once where they enter, filled without
str.format, so that a template from the command line or from MLflow can neither raise on
`{kind}` nor reach into Python objects through `{0.__class__}`."""
from __future__ import annotations

from common.errors import UserError


def check_template(template: str, what: str, example: str = "This is a photo of a {}") -> None:
    """Exactly one '{}' (where the class name or label goes) and no other brace."""
    if "{}" not in template:
        raise UserError(f"template {template!r} has no '{{}}' for the {what}; e.g. \"{example}\"")
    rest = template.replace("{}", "", 1)
    if "{" in rest or "}" in rest:
        raise UserError(f"template {template!r} must hold exactly one '{{}}' (for the {what}) and no other "
                        f"brace; e.g. \"{example}\"")


def fill(template: str, name: str) -> str:
    return template.replace("{}", name, 1)
