"""A SLURM job: clusters/slurm/sweep.sbatch, a bash script with #SBATCH directives that starts
Ray and MLflow on the job's nodes itself (`sbatch clusters/slurm/sweep.sbatch`)."""
from __future__ import annotations

import subprocess

from clip_prompt_sweeps.errors import UserError
from orchestrator.clusters.kinds import ClusterKind


class Slurm(ClusterKind):
    name = "SLURM batch file"
    shipped = "clusters/slurm/sweep.sbatch"
    directive = "#SBATCH"
    launches_through_node_scripts = False

    def recognises(self, text: str) -> bool:
        return self.directive in text

    def validate(self, path: str) -> str:
        """A batch file that bash can parse (sbatch runs it with bash)."""
        out = subprocess.run(["bash", "-n", path], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            first = (out.stderr.strip().splitlines() or ["bash -n failed"])[0]
            raise UserError(f"cluster config {path} is not a valid bash script ({first[:300]}); compare it with "
                            f"this project's {self.shipped}")
        return "valid (bash -n)"


KIND = Slurm()
