"""The job files in docs/ that README's "Beyond one machine" points to: valid, and saying what
the engine expects (an Indexed Job whose --part matches its completions, a valid recipe, a SLURM
script bash accepts)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from ziggurat.plan.parts import Part
from ziggurat.recipe import load_recipe

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_the_kubernetes_indexed_job_runs_every_part_and_then_ends(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all((DOCS / "kubernetes-indexed-job.yaml").read_text()))
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(config["data"]["recipe.yaml"])
    loaded = load_recipe(recipe)   # the recipe is valid as it stands
    assert loaded.output.remote and loaded.baselevel_range == (12, 12)
    parts = next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"] == "ziggurat-parts")
    spec = parts["spec"]
    assert spec["completionMode"] == "Indexed"
    command = spec["template"]["spec"]["containers"][0]["args"][0]
    seen = set()
    for index in range(spec["completions"]):   # what the shell makes of the command in each pod
        echoed = subprocess.run(["sh", "-c", command.replace("ziggurat execute", "echo", 1)], capture_output=True,
                                text=True, env={"JOB_COMPLETION_INDEX": str(index)}, check=True).stdout.split()
        part = Part.parse(echoed[echoed.index("--part") + 1])
        assert part.count == spec["completions"]
        seen.add(part.index)
    assert seen == set(range(1, spec["completions"] + 1))
    end = next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"] == "ziggurat-end")
    assert "--part" not in end["spec"]["template"]["spec"]["containers"][0]["command"]


def test_the_slurm_script_is_valid_bash_with_an_array_and_a_dependent_end() -> None:
    script = DOCS / "slurm-array.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "--array=1-" in text and "--part \\${SLURM_ARRAY_TASK_ID}/$N" in text
    assert "--dependency=afterok:" in text
