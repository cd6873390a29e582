"""Text templates ("This is a photo of a {}"): checked once where they enter, filled without
str.format, so that a template from the command line or from MLflow can neither raise on
`{kind}` nor reach into Python objects through `{0.__class__}`."""
from __future__ import annotations

import os
import stat

from clip_prompt_sweeps.errors import UserError


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


# CLIP's 18 templates for CIFAR-10 and CIFAR-100 (the CLIP repository's notebook
# "Prompt_Engineering_for_ImageNet" and clip_benchmark, which open_clip's published zero-shot
# numbers use).
CLIP_CIFAR_TEMPLATES = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a black and white photo of a {}.",
    "a low contrast photo of a {}.",
    "a high contrast photo of a {}.",
    "a bad photo of a {}.",
    "a good photo of a {}.",
    "a photo of a small {}.",
    "a photo of a big {}.",
    "a photo of the {}.",
    "a blurry photo of the {}.",
    "a black and white photo of the {}.",
    "a low contrast photo of the {}.",
    "a high contrast photo of the {}.",
    "a bad photo of the {}.",
    "a good photo of the {}.",
    "a photo of the small {}.",
    "a photo of the big {}.",
)
FILE_PREFIX = "file:"                   # a template set read from a file on this machine
TEMPLATE_SETS = ("single", "clip", f"{FILE_PREFIX}PATH")
MAX_TEMPLATE_FILE = 1 << 20


def template_set(name: str, single: str) -> tuple[str, ...]:
    """The templates of a set: 'single' (the config's one template, the seed's), 'clip' (CLIP's
    18 CIFAR templates) or 'file:PATH' (one template per line; blank lines skipped)."""
    if name == "single":
        check_template(single, "class name")
        return (single,)
    if name == "clip":
        return CLIP_CIFAR_TEMPLATES
    if name.startswith(FILE_PREFIX):
        return _template_file(name[len(FILE_PREFIX):])
    raise UserError(f"template_set '{name}' unknown; known: {', '.join(TEMPLATE_SETS)}")


def _template_file(path: str) -> tuple[str, ...]:
    fix = "write one template per line, each with one '{}' for the class name"
    try:
        # opened without blocking (a FIFO would wait for a writer), then checked to be a regular
        # file (a device such as /dev/zero reports size 0 and never ends), and read no further
        # than the limit whatever its size said
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UserError(f"template file {path} is not a regular file; {fix}")
            data = f.read(MAX_TEMPLATE_FILE + 1)
        if len(data) > MAX_TEMPLATE_FILE:
            raise UserError(f"template file {path} is more than {MAX_TEMPLATE_FILE:,} bytes; {fix}")
        lines = data.decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"template file {path} cannot be read ({getattr(err, 'strerror', None) or err}); {fix}") from None
    templates = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                check_template(line.strip(), "class name")
            except UserError as err:
                raise UserError(f"template file {path}, line {number}: {err}") from None
            templates.append(line.strip())
    if not templates:
        raise UserError(f"template file {path} holds no template; {fix}")
    return tuple(templates)
