"""DDP through the real launcher: ``torchrun --nproc_per_node=2`` (gloo, CPU) runs the stage-1 and stage-2 training
code of the stages; both ranks end with bit-identical weights (codebook included) and match a single-process run
with the same global batch. Run as a script, this file is the torchrun worker."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import agvq.training.stage1 as stage1  # noqa: E402
import agvq.training.stage2 as stage2  # noqa: E402
from agvq.cli import load_params  # noqa: E402
from agvq.config import RuntimeConfig  # noqa: E402
from agvq.data.dataset import CaseStore  # noqa: E402
from agvq.io import model_file as checkpoint  # noqa: E402
from agvq.training.loop import fit  # noqa: E402
from agvq.training.run import TrainingPaths  # noqa: E402
from agvq.training.runtime import seed_everything, setup_runtime, teardown_runtime  # noqa: E402
from agvq.training.tasks import SegmentationTask  # noqa: E402
from tests.helpers_config import cond_loss, protocol, train_cfg  # noqa: E402

# Losses that are means over voxels (CE for stage 1, focal + CE for stage 2) average over ranks to the global-batch
# loss; k-means init and dead-code re-seeding draw from rank 0's half of the batch, so they are off here (the
# quantizer's own DDP test covers them). No norm in the VQ-VAE: batch norm has no CPU SyncBatchNorm (its rank
# consistency is checked on a separate net below) and instance norm cancels conv biases, whose zero gradients AdamW
# turns into round-off-sized steps. Validation only after the last epoch, so the saved model is the final one.
OVERRIDE = {
    "vqvae": {"model": {"norm": "none"},
              "loss": {"dice_weight": 0.0, "ce_weight": 1.0},
              "quantizer": {"kmeans_init": False, "dead_code_threshold": 0.0},
              "train": {"epochs": 2, "val_every": 100, "lr": 2.0e-3}},
    "cond": {"train": {"epochs": 2, "val_every": 100, "lr": 1.0e-3}},
}


def paths_for(root: Path, data: Path, name: str) -> TrainingPaths:
    return TrainingPaths(data / "prepared", data / "splits.json", root / name / "model.pt",
                         root / name / "metrics.json", root / name / "curve.csv", root / "runs" / name)


def train_both(root: Path, data: Path, tag: str, vqvae_file: Path) -> dict[str, dict]:
    """Stage-1 then stage-2 (with the given frozen VQ-VAE) training as the stages run them; final weights."""
    params = load_params(root / "params.yaml")
    built: dict[str, nn.Module] = {}
    build_vqvae, build_model = stage1.build_vqvae, stage2.build_model
    stage1.build_vqvae = lambda p: built.setdefault("vqvae", build_vqvae(p))
    stage2.build_model = lambda *a, **k: built.setdefault("cond", build_model(*a, **k))
    try:
        stage1.train_vqvae("WT", params, paths_for(root, data, f"vq_{tag}"))
        stage2.train_variant("agvqvae", "WT", params, paths_for(root, data, f"cond_{tag}"), vqvae_file, 0)
    finally:
        stage1.build_vqvae, stage2.build_model = build_vqvae, build_model
    return {k: {n: t.detach().clone() for n, t in m.state_dict().items()} for k, m in built.items()}


def train_batch_norm_net(data: Path, run_dir: Path) -> dict:
    """A small net with BatchNorm through ``fit`` directly (DDP on CPU averages its running statistics)."""
    rt = setup_runtime(RuntimeConfig(device="cpu"), 0)
    net = nn.Sequential(nn.Conv3d(4, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(), nn.Conv3d(4, 2, 1))
    ids = json.loads((data / "splits.json").read_text())
    cfg = train_cfg(epochs=1, batch_size=4, patches_per_epoch=8, patch_size=[16, 16, 16], val_every=100)
    fit(SegmentationTask(net, cond_loss()), CaseStore(data / "prepared", ids["train"], "WT", cache=True),
        CaseStore(data / "prepared", ids["val"], "WT", cache=True), cfg, protocol(), rt, run_dir, None, 0, "fp",
        "bn")
    return {n: t.detach().clone() for n, t in net.state_dict().items()}


def worker(root: Path, data: Path, vqvae_file: Path) -> None:
    """One torchrun process: the stages' training code, then the BatchNorm net, in one process group (a stage
    process joins and leaves the group once; re-joining a torchrun group in one process is not what we test)."""
    torch.set_num_threads(1)
    stage1.teardown_runtime = stage2.teardown_runtime = lambda rt: None
    states = train_both(root, data, "ddp", vqvae_file)
    states["bn"] = train_batch_norm_net(data, root / "runs" / "bn_ddp")
    torch.save(states, root / f"rank{os.environ['RANK']}.pt")
    teardown_runtime(setup_runtime(RuntimeConfig(device="cpu"), 0))


def test_torchrun_two_ranks_identical_and_equal_to_single_process(tmp_path):
    from tests.helpers_training import make_prepared, write_params

    torch.set_num_threads(1)
    make_prepared(tmp_path)
    write_params(tmp_path / "params.yaml", OVERRIDE)
    params = load_params(tmp_path / "params.yaml")
    # the frozen stage 1 of both stage-2 runs: an untrained VQ-VAE file, so the two runs can start at once
    seed_everything(0)
    frozen = stage1.build_vqvae(params.vqvae_for("WT"))
    checkpoint.save_atomic(checkpoint.model_file("vqvae", frozen, {"region": "WT", "num_embeddings": 8,
                                                                   "latent_dim": 4, "stride": 4}), tmp_path / "vq.pt")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", __file__,
           str(tmp_path), str(tmp_path / "vq.pt")]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # meanwhile, the single-process reference with the same global batch
    single = train_both(tmp_path, tmp_path, "single", tmp_path / "vq.pt")
    single["bn"] = train_batch_norm_net(tmp_path, tmp_path / "runs" / "bn_single")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for kind in ("vqvae", "cond", "bn"):
        for name, value in ranks[0][kind].items():
            assert torch.equal(value, ranks[1][kind][name]), f"{kind} {name} differs between the ranks"
    for kind in ("vqvae", "cond"):
        for name, value in ranks[0][kind].items():
            ref = single[kind][name]
            if value.is_floating_point():
                torch.testing.assert_close(value, ref, rtol=1e-4, atol=1e-5, msg=f"{kind} {name}")
            else:
                assert torch.equal(value, ref), f"{kind} {name}"
    # and the two VQ-VAEs give the same logits
    patch = torch.from_numpy(CaseStore(tmp_path / "prepared", ["case04"], "WT", cache=False)[0].mask[None, None, :16, :16, :16])
    outputs = []
    for state in (single["vqvae"], ranks[0]["vqvae"]):
        model = stage1.build_vqvae(params.vqvae_for("WT"))
        model.load_state_dict(state)
        outputs.append(model.eval()(patch.float()).logits)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-4, atol=1e-4)
    # the codebook moved during training (EMA statistics all-reduced), identically on both ranks and as in one process
    seed_everything(0)
    init = stage1.build_vqvae(params.vqvae_for("WT"))
    assert not torch.allclose(init.quantizer.embedding, ranks[0]["vqvae"]["quantizer.embedding"], atol=1e-3)
    # rank 0 alone wrote the model files, metrics and curves
    for name in ("vq_ddp", "cond_ddp"):
        bundle = checkpoint.load(tmp_path / name / "model.pt")
        for key, value in bundle["state_dict"].items():
            assert torch.equal(value, ranks[0]["vqvae" if name == "vq_ddp" else "cond"][key])
        ddp_metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        single_metrics = json.loads((tmp_path / name.replace("ddp", "single") / "metrics.json").read_text())
        assert abs(ddp_metrics["train_loss"] - single_metrics["train_loss"]) < 1e-4
        assert not (tmp_path / "runs" / name).exists()


if __name__ == "__main__":
    worker(Path(sys.argv[1]), Path(sys.argv[1]), Path(sys.argv[2]))
