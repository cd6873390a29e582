"""The kinds of cluster a sweep runs on, each a file the project ships and `doctor
--cluster-config FILE` checks: one module per kind, each declaring `KIND`, found by package
discovery as experiments and dataset sources are. Adding a kind is one module here (and its
shipped file); `doctor`, the checks of orchestrator/clusters/files.py and the tests ask this
package which kind a file is."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from clip_prompt_sweeps.discovery import declared
from clip_prompt_sweeps.errors import UserError

ROOT = Path(__file__).resolve().parents[3]


class ClusterKind:
    name: str = ""                  # as doctor prints it
    shipped: str = ""               # the project's own file of this kind, relative to the checkout
    directive: str = ""             # lines that begin so speak to the scheduler; to the shell (and
                                    # so to doctor's checks) they are comments
    launches_through_node_scripts = True    # Ray and MLflow start through clusters/node/*.sh

    def recognises(self, text: str) -> bool:
        raise NotImplementedError

    def describe(self, text: str) -> str:
        return self.name

    def validate(self, path: str) -> str:
        """The file's form as its own tool would check it ("valid (...)"), or one line what is wrong."""
        raise NotImplementedError


def provider(text: str) -> str | None:
    """A Ray cluster launcher file's provider type (`provider: {type: aws}`); None where the text
    is no YAML mapping with one (a batch script, a broken file)."""
    import yaml
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    found = config.get("provider") if isinstance(config, dict) else None
    kind = found.get("type") if isinstance(found, dict) else None
    return kind if isinstance(kind, str) else None


class RayLauncher(ClusterKind):
    """A `ray up` file: checked against the schema shipped inside Ray, as `ray up` would."""
    provider_type: str = ""

    def recognises(self, text: str) -> bool:
        return provider(text) == self.provider_type

    def describe(self, text: str) -> str:
        return f"Ray cluster launcher ({provider(text) or 'unknown'} provider)"

    def validate(self, path: str) -> str:
        config = _ray_schema(path)
        types = config.get("available_node_types") or {}
        return "valid (Ray's schema)" + (f"; node types: {', '.join(types)}" if types else "")


def _ray_schema(path: str) -> dict:
    import logging

    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config
    logging.getLogger("ray.autoscaler").setLevel(logging.WARNING)    # its INFO lines are noise here
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
        if not isinstance(config, dict):
            raise ValueError("not a YAML mapping")
        validate_config(prepare_config(config))
    except OSError as err:
        raise UserError(f"cluster config {path}: cannot read it ({err.strerror})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"cluster config {path} is not valid YAML{where} ({getattr(err, 'problem', err)})") from None
    except Exception as err:  # noqa: BLE001 - yaml, schema and Ray's own checks all mean "fix the file"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cluster config {path} fails Ray's schema: {first[:300]}; compare it with this "
                        f"project's cluster.yaml") from None
    return config


class _OtherLauncher(RayLauncher):
    """A launcher file of a provider no module here describes (GCP, Azure, ...): Ray's schema still holds."""

    def recognises(self, text: str) -> bool:
        return True


@lru_cache(maxsize=1)
def discovered() -> tuple[ClusterKind, ...]:
    """Every module of this package that declares KIND, in module-name order."""
    return declared(__name__, __path__, "KIND", ClusterKind)


def kind_of(text: str) -> ClusterKind:
    """The kind a cluster file's text is; a launcher file of another provider is Ray's to check."""
    return next((k for k in discovered() if k.recognises(text)), _OtherLauncher())
