"""Machines of one's own through Ray's cluster launcher over SSH: clusters/onprem.yaml (the
launcher's `local` provider)."""
from orchestrator.clusters.kinds import RayLauncher


class OnPrem(RayLauncher):
    name = "on-premise"
    shipped = "clusters/onprem.yaml"
    provider_type = "local"


KIND = OnPrem()
