"""The training loop: ``fit(recipe)`` on Accelerate, in plain functions.

One step: a uint8 batch moves to the training device, the view pipeline draws two augmented
views there, backbone + head embed both views in one pass, the loss compares them, the optimiser
steps and the LR schedule advances (every iteration).  Checkpoints are written atomically
(:mod:`contrastive.checkpoint`); ``trainer.resume`` continues from the newest complete one.
At the end the run directory holds ``config.yaml``, ``results.json``, ``backbone.safetensors``,
``metrics.jsonl``, TensorBoard logs and ``checkpoints/``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from contrastive import checkpoint
from contrastive.errors import DataError, RecipeError, TrainingError
from contrastive.recipe import Recipe
from contrastive.views import match_channels

STEADY_STATE_SKIP = 5  # steps excluded from the views/s figure (warm-up, allocator growth)


class SimCLRModel(nn.Module):
    """Backbone f and projection head g: ``(B,C,H,W) -> z = g(f(x))`` of shape ``(B, out_dim)``."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.channels_last = False  # set by fit (trainer.channels_last): views enter as NHWC

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.backbone(x))


@dataclass
class Parts:
    """Everything built from a recipe, before Accelerate wraps it."""

    dataset: Any
    pipeline: nn.Module
    model: SimCLRModel
    loss: nn.Module
    in_chans: int


def build_parts(recipe: Recipe, registries) -> Parts:
    """Build dataset, view pipeline, model and loss from the recipe's registry names."""
    from contrastive.views import ViewPipeline

    dataset = registries.datasets.build(recipe.data.name, **recipe.data.args)
    pipeline = ViewPipeline([registries.augmentations.build(a.name, **a.args) for a in recipe.augmentation])
    backbone = registries.backbones.build(recipe.backbone.name, **recipe.backbone.args)
    if not isinstance(getattr(backbone, "num_features", None), int):
        raise RecipeError(f"backbone '{recipe.backbone.name}' has no int attribute num_features (backbone contract)")
    in_chans = recipe.backbone_in_chans
    data_chans = int(getattr(dataset, "num_channels", in_chans))
    if data_chans != in_chans and not (data_chans == 1 and in_chans == 3):
        raise DataError(
            f"dataset '{recipe.data.name}' has {data_chans}-channel images but the backbone expects "
            f"{in_chans}; set --backbone.args.in_chans {data_chans}"
        )
    if getattr(dataset, "whole_image", False):  # also checks the pipeline can un-squash whole images
        image, _, aspect = dataset.load_item(0)
        view_size = tuple(pipeline(image[None], source_aspect=torch.tensor([aspect]))[0].shape[-2:])
    else:
        view_size = tuple(pipeline(dataset[0][0][None])[0].shape[-2:])
    backbone = _fit_backbone_to_views(backbone, recipe, registries, in_chans, view_size)
    head = registries.heads.build(recipe.head.name, in_dim=backbone.num_features, **recipe.head.args)
    loss = registries.losses.build(recipe.loss.name, **recipe.loss.args)
    return Parts(dataset, pipeline, SimCLRModel(backbone, head), loss, in_chans)


def _fit_backbone_to_views(backbone, recipe: Recipe, registries, in_chans: int, view_size: tuple[int, int]):
    """Check the backbone takes the pipeline's view size; models built for a fixed input size
    (ViT, Swin, ...) are rebuilt with ``img_size`` set to it, so swapping a backbone by name needs
    no other change."""
    probe = torch.zeros(2, in_chans, *view_size)

    def features_of(model: nn.Module) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            out = model(probe)
        model.train()
        return out

    try:
        out = features_of(backbone)
    except Exception as first_error:
        if "img_size" in recipe.backbone.args:
            raise RecipeError(
                f"backbone '{recipe.backbone.name}' cannot take {in_chans}×{view_size[0]}×{view_size[1]} views: {first_error}"
            ) from first_error
        try:
            backbone = registries.backbones.build(recipe.backbone.name, **recipe.backbone.args, img_size=view_size)
            out = features_of(backbone)
        except Exception:
            raise RecipeError(
                f"backbone '{recipe.backbone.name}' cannot take the {in_chans}×{view_size[0]}×{view_size[1]} views "
                f"the augmentation makes: {first_error}"
            ) from first_error
        print(f"note: backbone '{recipe.backbone.name}' built with img_size={list(view_size)} to match the views")
    if tuple(out.shape) != (2, backbone.num_features):
        raise RecipeError(
            f"backbone '{recipe.backbone.name}' returned {tuple(out.shape)} for 2 views, not (2, num_features="
            f"{backbone.num_features}): a backbone must return pooled features (B, num_features)"
        )
    return backbone


def default_workers(on_cuda: bool) -> int:
    """DataLoader workers: the augmentations run on the training device, so workers only read and
    decode; on a small CPU machine extra processes would compete with the model for cores."""
    cores = os.cpu_count() or 1
    if on_cuda:
        return min(8, cores)
    return 0 if cores <= 2 else min(4, cores // 2)


def _prepare_output_dir(trainer) -> Path:
    out = Path(trainer.output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"  # one per process: every rank checks
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise RecipeError(
            f"trainer.output_dir '{out}' cannot be created or written ({exc.strerror or exc}); "
            f"choose another with --trainer.output_dir PATH"
        ) from exc
    has_checkpoints = bool(checkpoint.complete(out / "checkpoints"))
    if has_checkpoints and not trainer.resume:
        if not trainer.overwrite:
            raise RecipeError(
                f"trainer.output_dir '{out}' already holds a run's checkpoints; continue it with "
                f"--trainer.resume true, start over with --trainer.overwrite true, or pick a new --trainer.output_dir"
            )
        import shutil

        shutil.rmtree(out / "checkpoints", ignore_errors=True)  # every rank may get here
    return out


def _versions(registries) -> dict[str, str]:
    import accelerate
    import kornia
    import timm
    import torchvision

    from contrastive import __version__

    versions = {
        "contrastive": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "kornia": kornia.__version__,
        "accelerate": accelerate.__version__,
    }
    return {k: str(v) for k, v in versions.items()}


def _plugins(registries) -> list[dict[str, Any]]:
    return [
        {"name": p.name, "distribution": p.distribution, "version": p.version, "builtin": p.builtin}
        for p in getattr(registries, "plugins", [])
    ]


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _flat_hparams(recipe: Recipe) -> dict[str, Any]:
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                walk(f"{prefix}.{index}", inner)
        elif isinstance(value, (int, float, str, bool)):
            flat[prefix] = value
        elif value is not None:
            flat[prefix] = str(value)

    walk("", recipe.to_dict())
    return flat


def _maybe_sync_batchnorm(model: nn.Module, enabled: bool, processes: int, device: torch.device) -> nn.Module:
    """``trainer.sync_batchnorm``: BatchNorm statistics over the global batch (the paper's global BN)."""
    if not enabled:
        return model
    if processes == 1:
        print("note: trainer.sync_batchnorm has no effect with one process (BatchNorm already sees the whole batch)")
        return model
    if device.type == "cpu":
        raise RecipeError(
            "trainer.sync_batchnorm needs GPUs: torch's SyncBatchNorm does not run on the CPU (gloo); "
            "set --trainer.sync_batchnorm false for multi-process CPU training"
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def _step_forward_backward(
    images, pipeline, model, loss_fn, accelerator, trainer, source_aspect: torch.Tensor | None = None
) -> torch.Tensor:
    """Views, embeddings, loss and backward of one step, in ``trainer.accumulate`` chunks of
    ``trainer.batch_size`` images (GradCache, :mod:`contrastive.accumulate`); the loss is detached.
    ``source_aspect`` (``(B,)``, whole-image datasets only): each image's original width / height,
    for the crop step to draw its boxes over the whole original image."""
    from contrastive.accumulate import contrastive_step

    chunk = trainer.batch_size

    def embed(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        part = slice(k * chunk, (k + 1) * chunk)
        if source_aspect is None:
            view_a, view_b = pipeline.two_views(images[part])
        else:
            view_a, view_b = pipeline.two_views(images[part], source_aspect=source_aspect[part])
        with accelerator.autocast():
            return model(torch.cat([view_a, view_b])).chunk(2)

    def loss_of(z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        with accelerator.autocast():
            return loss_fn(z_a, z_b)

    return contrastive_step(
        embed, loss_of, trainer.accumulate, backward=accelerator.backward,
        no_sync=lambda: accelerator.no_sync(model), model=model, device=accelerator.device,
    )


def _nonfinite_loss(value: float, step: int, epoch: int, count: int, trainer, ckpt_dir: Path, accelerator) -> None:
    """A non-finite loss at ``step``: skip it while ``count <= trainer.skip_nonfinite``, else stop."""
    if count <= trainer.skip_nonfinite:
        accelerator.print(
            f"warning: the loss became {value} at step {step} (epoch {epoch}); step skipped, weights "
            f"unchanged ({count} of trainer.skip_nonfinite {trainer.skip_nonfinite})"
        )
        return
    good = checkpoint.newest_valid(ckpt_dir)[0]
    allowed = f" after skipping {count - 1} (trainer.skip_nonfinite {trainer.skip_nonfinite})" if trainer.skip_nonfinite else ""
    raise TrainingError(
        f"the loss became {value} at step {step} (epoch {epoch}){allowed}; "
        f"last good checkpoint: {good or 'none'}. Lower the learning rate "
        f"(--optimizer.args.lr) or raise the temperature, then resume with --trainer.resume true"
    )


def _data_path_options(model: SimCLRModel, trainer, device: torch.device) -> None:
    """``trainer.channels_last`` (None: on for CUDA, off for the CPU, where oneDNN ran ResNet-18
    slower in NHWC) and ``trainer.compile`` (the backbone compiled in place: its state_dict keys,
    and so checkpoints and ``backbone.safetensors``, stay those of the plain model)."""
    channels_last = trainer.channels_last if trainer.channels_last is not None else device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
        model.channels_last = True
    if trainer.compile:
        model.backbone.compile()


def fit(recipe: Recipe, registries) -> dict[str, Any]:
    """Train ``recipe`` and return the results written to ``results.json``."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, gather_object, set_seed

    from contrastive.components.datasets import WholeImageItems, guard_loader
    from contrastive.host_memory import keep_freed_host_memory

    trainer = recipe.trainer
    started = time.perf_counter()
    if trainer.mixed_precision == "fp16" and (trainer.cpu or not torch.cuda.is_available()):
        raise RecipeError("trainer.mixed_precision fp16 needs a GPU; use bf16 or no on the CPU")
    out = _prepare_output_dir(trainer)
    accelerator = Accelerator(
        mixed_precision=trainer.mixed_precision,
        # Without CUDA, Accelerate sees torchrun's processes as one unless told they run on the CPU.
        cpu=trainer.cpu or (int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()),
        log_with="tensorboard",
        project_dir=str(out),
        # non_blocking: Accelerate copies each pinned uint8 batch to the GPU while it fetches the next
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, non_blocking=True),
        step_scheduler_with_optimizer=False,
    )
    set_seed(recipe.seed)
    device = accelerator.device
    main = accelerator.is_main_process
    if device.type == "cpu":  # steps re-allocate the same large tensors: keep freed memory (host_memory)
        keep_freed_host_memory()

    parts = build_parts(recipe, registries)
    processes = accelerator.num_processes
    # One optimiser step: `accumulate` forward passes of batch_size images on each process, all
    # of whose views are negatives for each other (contrastive.accumulate); the lr scales with it.
    global_batch = trainer.batch_size * processes * trainer.accumulate
    if len(parts.dataset) < global_batch:
        raise DataError(
            f"the dataset has {len(parts.dataset)} images, fewer than one global batch of {global_batch} "
            f"({trainer.batch_size} × {processes} processes × accumulate {trainer.accumulate}); lower --trainer.batch_size"
        )
    workers = trainer.num_workers if trainer.num_workers is not None else default_workers(device.type == "cuda")
    # Whole-image data (image_folder/imagenet crop: whole): batches also carry each image's original
    # aspect ratio, with which the crop step draws its boxes over the whole original image.
    whole_image = bool(getattr(parts.dataset, "whole_image", False))
    loader = torch.utils.data.DataLoader(
        WholeImageItems(parts.dataset) if whole_image else parts.dataset,
        batch_size=trainer.batch_size * trainer.accumulate,
        shuffle=True,
        drop_last=True,  # every process has the same batch: gather_with_grad needs it
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        # A private generator: creating an epoch's iterator must not draw from the global RNG
        # that drives the augmentations, or a mid-epoch resume would see different views.
        generator=torch.Generator().manual_seed(recipe.seed),
    )
    model = _maybe_sync_batchnorm(parts.model, trainer.sync_batchnorm, processes, device)
    _data_path_options(model, trainer, device)
    optimizer = registries.optimizers.build(
        recipe.optimizer.name,
        named_parameters=[(n, p) for n, p in model.named_parameters() if p.requires_grad],
        batch_size=global_batch,
        **recipe.optimizer.args,
    )
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * trainer.max_epochs
    if trainer.max_steps is not None:
        total_steps = min(total_steps, trainer.max_steps)
    scheduler = registries.schedulers.build(
        recipe.scheduler.name,
        optimizer=optimizer,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        **recipe.scheduler.args,
    )
    pipeline = parts.pipeline.to(device)
    loss_fn = parts.loss.to(device)
    unwrapped = accelerator.unwrap_model(model)
    scaler = accelerator.scaler
    # Evaluation (contrastive.evaluate): check the eval data now rather than after training; the
    # online kNN monitor runs on the main process every eval.monitor_every epochs.
    from contrastive import evaluation

    if main and recipe.eval.protocols:
        evaluation.eval_data_components(recipe, registries)
    monitor = evaluation.KNNMonitor(recipe, registries, device) if main and recipe.eval.monitor_every else None

    ckpt_dir = out / "checkpoints"
    global_step, start_epoch, skip_batches = 0, 0, 0
    nonfinite_steps = amp_skipped_steps = 0  # trainer.skip_nonfinite; fp16 scaler's skipped steps
    if trainer.resume:
        path, problems = checkpoint.newest_valid(ckpt_dir)
        for problem in problems:
            accelerator.print(f"warning: skipping damaged checkpoint {problem}")
        if path is None and problems:
            raise TrainingError(
                f"no checkpoint in {ckpt_dir} is intact ({'; '.join(problems)}); start over with "
                f"--trainer.overwrite true --trainer.resume false, or pick a new --trainer.output_dir"
            )
        if path is None:
            accelerator.print(f"no complete checkpoint in {ckpt_dir}: starting from scratch")
        else:
            progress = checkpoint.load(
                path, model=unwrapped, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                rank=accelerator.process_index, world_size=processes,
            )
            nonfinite_steps = int(progress.get("nonfinite_skipped", 0))
            amp_skipped_steps = int(progress.get("amp_skipped_steps", 0))
            global_step = progress["global_step"]
            start_epoch = progress["epoch"]
            skip_batches = progress["batches_done_in_epoch"]
            if progress.get("steps_per_epoch") != steps_per_epoch:
                raise TrainingError(
                    f"checkpoint {path} was written with {progress.get('steps_per_epoch')} steps per epoch, "
                    f"this run has {steps_per_epoch}: resume with the same data, batch size, trainer.accumulate and number of processes"
                )
            accelerator.print(f"resumed from {path} (epoch {start_epoch}, step {global_step})")

    if main:
        config = recipe.to_dict()
        config["plugins"] = _plugins(registries)
        config["versions"] = _versions(registries)
        (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False, default_flow_style=None))
    accelerator.init_trackers("tensorboard", config=_flat_hparams(recipe))

    def save_checkpoint(epoch: int, batches_done: int) -> Path | None:
        rng_states = gather_object([checkpoint.capture_rng()])
        saved = None
        if main:
            saved = checkpoint.save(
                ckpt_dir,
                model=unwrapped,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler,
                rng_states=rng_states,
                keep_last=trainer.keep_last,
                progress={
                    "global_step": global_step,
                    "epoch": epoch,
                    "batches_done_in_epoch": batches_done,
                    "steps_per_epoch": steps_per_epoch,
                    "nonfinite_skipped": nonfinite_steps,
                    "amp_skipped_steps": amp_skipped_steps,
                },
            )
        accelerator.wait_for_everyone()
        return saved

    bar = None
    if main and trainer.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=global_step, unit="step", dynamic_ncols=True)
    metrics_file = open(out / "metrics.jsonl", "a") if main else None
    views_per_step = 2 * global_batch
    steady_steps, steady_time = 0, 0.0
    recent_losses: list[float] = []
    last_loss = math.nan
    last_saved: Path | None = None
    model.train()
    try:
        epoch = start_epoch
        while epoch < trainer.max_epochs and global_step < total_steps:
            loader.set_epoch(epoch)
            batches = accelerator.skip_first_batches(loader, skip_batches) if skip_batches else loader
            batches = guard_loader(batches, parts.dataset)  # worker errors: one line, naming the file
            batch_index = skip_batches
            skip_batches = 0
            tick = time.perf_counter()  # a step's time includes waiting for its batch (a starved loader shows)
            for batch in batches:
                images = match_channels(batch[0], parts.in_chans)
                aspect = batch[2] if whole_image else None  # (B,) float32; the crop step moves it to the CPU
                buffers = [b.clone() for b in unwrapped.buffers()] if trainer.skip_nonfinite else None
                loss = _step_forward_backward(images, pipeline, model, loss_fn, accelerator, trainer, aspect)
                last_loss = accelerator.reduce(loss.detach(), reduction="mean").item()
                if math.isfinite(last_loss):
                    if trainer.grad_clip is not None:
                        accelerator.clip_grad_norm_(model.parameters(), trainer.grad_clip)
                    optimizer.step()
                    amp_skipped_steps += int(accelerator.optimizer_step_was_skipped)  # fp16 overflow: not a failure
                else:
                    nonfinite_steps += 1
                    _nonfinite_loss(last_loss, global_step + 1, epoch, nonfinite_steps, trainer, ckpt_dir, accelerator)
                    with torch.no_grad():  # undo the BatchNorm statistics of the skipped forward pass
                        for buffer, saved in zip(unwrapped.buffers(), buffers, strict=True):
                            buffer.copy_(saved)
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                global_step += 1
                batch_index += 1
                elapsed = time.perf_counter() - tick
                if global_step - 1 >= STEADY_STATE_SKIP or steady_steps == 0 and global_step >= total_steps:
                    steady_steps += 1
                    steady_time += elapsed
                if math.isfinite(last_loss):
                    recent_losses.append(last_loss)
                lr = optimizer.param_groups[0]["lr"]
                speed = views_per_step / elapsed if elapsed > 0 else 0.0
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{last_loss:.4f}", lr=f"{lr:.3g}", views_s=f"{speed:.0f}")
                if global_step % trainer.log_every == 0 or global_step == total_steps:
                    record = {"step": global_step, "epoch": epoch, "loss": last_loss, "lr": lr, "views_per_second": speed}
                    accelerator.log({k: v for k, v in record.items() if k != "step"}, step=global_step)
                    if metrics_file is not None:
                        metrics_file.write(json.dumps(record) + "\n")
                        metrics_file.flush()
                if trainer.checkpoint_every_steps and global_step % trainer.checkpoint_every_steps == 0:
                    last_saved = save_checkpoint(epoch, batch_index)
                tick = time.perf_counter()
                if global_step >= total_steps:
                    break
            finished_epoch = batch_index >= steps_per_epoch
            if finished_epoch:
                epoch += 1
                if monitor is not None and epoch % recipe.eval.monitor_every == 0:
                    record = {"step": global_step, "epoch": epoch - 1, **monitor(unwrapped.backbone)}
                    accelerator.log({k: v for k, v in record.items() if k not in ("step", "epoch")}, step=global_step)
                    metrics_file.write(json.dumps(record) + "\n")
                    metrics_file.flush()
                    (bar.write if bar is not None else print)(f"epoch {epoch - 1}: online kNN top-1 {record['knn_top1']:.4f}")
            at_end = global_step >= total_steps or epoch >= trainer.max_epochs
            if finished_epoch and (at_end or (trainer.checkpoint_every and epoch % trainer.checkpoint_every == 0)):
                last_saved = save_checkpoint(epoch, 0)
            elif at_end:
                last_saved = save_checkpoint(epoch, batch_index)
    finally:
        if bar is not None:
            bar.close()
        if metrics_file is not None:
            metrics_file.close()

    results: dict[str, Any] = {}
    if main:
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in unwrapped.backbone.state_dict().items()}
        save_file(state, str(out / "backbone.safetensors"), metadata={"backbone": recipe.backbone.name})
        window = recent_losses[-steps_per_epoch:] or [last_loss]
        results = {
            "loss": last_loss,
            "loss_last_epoch_mean": sum(window) / len(window),
            "steps": global_step,
            "epochs": epoch,
            "global_batch_size": global_batch,
            "processes": processes,
            "device": str(device),
            "mixed_precision": trainer.mixed_precision,
            "views_per_second": views_per_step * steady_steps / steady_time if steady_time > 0 else None,
            "peak_memory_mb": _peak_memory_mb(device),
            "wall_time_s": time.perf_counter() - started,
            "checkpoint": str(last_saved) if last_saved else None,
            "nonfinite_steps_skipped": nonfinite_steps,
            "skipped_files": getattr(parts.dataset, "skipped_files", None),
            "amp_skipped_steps": amp_skipped_steps,
            "versions": _versions(registries),
            "plugins": _plugins(registries),
        }
        if recipe.eval.protocols:  # frozen-feature kNN / linear probe beside the baselines
            data = monitor.data if monitor is not None else None
            results["eval"] = evaluation.evaluate(unwrapped.backbone, recipe, registries, data=data, device=device)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    accelerator.end_training()
    return results
