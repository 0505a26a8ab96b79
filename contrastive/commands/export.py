"""``contrastive export``: a run's backbone as a folder timm loads (and the Hugging Face Hub)."""

from __future__ import annotations

import os

from contrastive.commands.command import Command, registries
from contrastive.errors import ExportError


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="the run's trainer.output_dir")
    parser.add_argument("out", nargs="?", default=None, help="an empty or new folder (default: RUN_DIR/export)")
    parser.add_argument("--push", default=None, metavar="REPO_ID",
                        help="also upload the folder to the Hugging Face Hub as REPO_ID (USER/NAME); needs "
                        "huggingface_hub and a token (hf auth login, or HF_TOKEN)")
    parser.add_argument("--private", action="store_true", help="with --push: create the repo private")
    parser.add_argument("--license", default=None, metavar="ID",
                        help="the weights' licence for the model card's metadata, a Hub licence id (apache-2.0, mit, ...)")


def run(args, overrides: list[str]) -> int:
    from contrastive.tools import hub
    from contrastive.tools.export import export

    options = args.export
    repo_id = options.push
    if repo_id:
        hub.check_ready(repo_id)  # installed, a repo id, a token: before anything is written
    elif options.private:
        raise ExportError("--private goes with --push REPO_ID")
    out = options.out or os.path.join(options.run_dir, "export")
    done = export(options.run_dir, out, registries(args), repo_id=repo_id, license=options.license)
    print(f"wrote {done['out']}: {done['backbone']} backbone ({done['num_features']} features), "
          f"model.safetensors + config.json + README.md (model card)")
    if repo_id:
        print(f"pushed {', '.join(done['files'])} to {repo_id}: {hub.push(done['out'], repo_id, private=options.private)}")
    source = f"hf-hub:{repo_id}" if repo_id else f"local-dir:{done['out']}"
    if done["timm_loads"]:
        print(f"load it with timm.create_model('{source}', pretrained=True)")
    else:
        where = f'snapshot_download("{repo_id}")' if repo_id else f"'{done['out']}'"
        print(f"note: timm's config cannot express the CIFAR stem (cifar_stem: true): load it with "
              f"contrastive.load_backbone({where})")
    return 0


COMMAND = Command(
    name="export",
    help="export a run's backbone for timm / the Hugging Face Hub",
    usage="RUN_DIR [OUT/] [--push REPO_ID [--private]] [--license ID]",
    description="Write a run's backbone as a folder timm loads: model.safetensors + config.json (architecture, "
    "model args, the run's input size and mean/std): timm.create_model('local-dir:OUT', pretrained=True); "
    "the folder is the Hugging Face Hub layout (upload it to use hf-hub:USER/NAME).",
    add_arguments=add_arguments,
    run=run,
)
