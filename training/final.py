"""Final fits on Ray Train: every member a ``TorchTrainer`` run (GPU workers when asked for), all members in
parallel, trained on all clips for the epoch count CV chose; checkpoints and results go to a storage path
(local folder or cloud URI) and a rerun resumes finished members from their checkpoint.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nexara.config import NexaraConfig
from nexara.errors import TrainingError
from nexara.training_config import MemberConfig, TrainConfig
from training.cv import member_input
from training.loop import refit_settings, train_member

log = logging.getLogger(__name__)

_RESULT_FILE = "result.pt"


def _train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: train one member on all clips, report per epoch, checkpoint the result."""
    import ray
    import ray.train

    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            if (Path(d) / _RESULT_FILE).is_file():
                # resumed after the member had finished: report the stored result again
                meta = json.loads((Path(d) / "meta.json").read_text())
                with tempfile.TemporaryDirectory() as out:
                    import shutil

                    shutil.copytree(d, out, dirs_exist_ok=True)
                    ray.train.report(meta, checkpoint=ray.train.Checkpoint.from_directory(out))
                return
    torch.set_num_threads(int(config["threads"]))
    member = MemberConfig.model_validate(config["member"])
    x = member_input(ray.get(config["x_ref"]), member)
    y = np.asarray(config["y"])
    train_cfg = TrainConfig.model_validate(config["train"])
    device = "cuda" if torch.cuda.is_available() and config.get("use_gpu") else "cpu"

    def on_epoch(metrics: dict[str, Any]) -> None:
        ray.train.report({k: v for k, v in metrics.items() if isinstance(v, (int, float))})

    res = train_member(x, y, x, y, member, train_cfg, device=device, on_epoch=on_epoch)
    meta = {"member": member.name, "best_epoch": int(res.best_epoch), "done": 1}
    with tempfile.TemporaryDirectory() as out:
        torch.save(
            {"state_dict": res.state_dict, "head_config": res.head_config, "history": res.history},
            Path(out) / _RESULT_FILE,
        )
        (Path(out) / "meta.json").write_text(json.dumps(meta))
        ray.train.report(meta, checkpoint=ray.train.Checkpoint.from_directory(out))


def _fit_member_with_trainer(
    config: dict[str, Any], run_name: str, storage_path: str, cpus: float, use_gpu: bool
) -> dict[str, Any]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = {"GPU": 1.0} if use_gpu else {"CPU": cpus}
    trainer = TorchTrainer(
        _train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=1, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(name=run_name, storage_path=storage_path),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise TrainingError(f"{run_name}: Ray Train finished without a checkpoint")
    with result.checkpoint.as_directory() as d:
        payload = torch.load(Path(d) / _RESULT_FILE, map_location="cpu", weights_only=False)
    return payload


def train_final(
    inputs: dict[str, np.ndarray], y: np.ndarray, cfg: NexaraConfig, *, epochs: dict[str, int], run_name: str
) -> dict[str, dict[str, Any]]:
    """Train every member on all clips with Ray Train, members in parallel. Needs Ray initialised."""
    import ray

    sec = cfg.training
    storage = sec.storage_path
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    use_gpu = sec.use_gpu
    x_ref = ray.put({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()})
    # num_cpus=0: the driver task only waits; the trainer's worker holds the CPU share
    fit = ray.remote(num_cpus=0)(_fit_member_with_trainer)
    refs = {}
    for m in sec.members:
        member, train_cfg = refit_settings(m, sec.train, epochs.get(m.name, m.epochs))
        config = {
            "x_ref": x_ref,
            "y": y.tolist(),
            "member": member.model_dump(mode="json"),
            "train": train_cfg.model_dump(mode="json"),
            "threads": sec.torch_threads,
            "use_gpu": use_gpu,
        }
        refs[m.name] = fit.remote(config, f"{run_name}-{m.name}", storage, sec.member_num_cpus, use_gpu)
    out = {}
    for name, ref in refs.items():
        try:
            out[name] = ray.get(ref)
        except ray.exceptions.RayError as exc:
            raise TrainingError(f"member {name}: Ray Train run failed: {exc}") from None
        log.info("final: member %s trained", name)
    return out
