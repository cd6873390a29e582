"""AWS through Ray's cluster launcher: cluster.yaml at the checkout's top (`ray up cluster.yaml`)."""
from orchestrator.clusters.kinds import RayLauncher


class AWS(RayLauncher):
    name = "AWS"
    shipped = "cluster.yaml"
    provider_type = "aws"


KIND = AWS()
