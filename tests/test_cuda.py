"""The GPU path: the update replayed from a CUDA graph does what the eager update does.

Every test here needs CUDA and skips cleanly without it (CI has no GPU); the GPU check
script (benchmarks/gpu_check.sh) runs them on a machine that has one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agent.config import make_config
from agent.dreamer.agent import DreamerAgent, metrics_to_host

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _agents(*overrides: str) -> tuple[DreamerAgent, DreamerAgent]:
    cfg = make_config("tiny", list(overrides))
    torch.manual_seed(0)
    eager = DreamerAgent(cfg).cuda()
    graphed = DreamerAgent(cfg).cuda()
    graphed.load_state_dict(eager.state_dict())
    return eager, graphed


def _with_context(cfg, batch: dict, seed: int) -> dict:
    """A replay batch with the context the replay hands out (the latent before the sequence)."""
    g = torch.Generator().manual_seed(seed)
    b, m = batch["obs"].shape[0], cfg.model
    return {
        **batch,
        "start_deter": torch.randn(b, m.deter, generator=g),
        "start_stoch": torch.randint(0, m.classes, (b, m.stoch), generator=g),
        "start_action": torch.rand(b, 4, generator=g) * 2 - 1,
    }


@cuda
@pytest.mark.parametrize(
    "overrides",
    [
        (),
        ("explore.scale=0.1", "actor.imag_fraction=0.25"),
        ("optim.name=laprop", "critic.repval_scale=0.3", "model.init=official", "train.replay_context=true"),
    ],
)
def test_graph_replay_follows_the_eager_update(random_batch, overrides) -> None:
    eager, graphed = _agents(*overrides)
    batches = [random_batch(eager.cfg, seed) for seed in range(6)]
    if eager.cfg.train.replay_context:
        batches = [_with_context(eager.cfg, b, seed) for seed, b in enumerate(batches)]
    batches = [{k: v.cuda() for k, v in b.items()} for b in batches]
    for batch in batches[:2]:
        eager.step(batch)
        graphed.step(batch)
    eager_metrics = eager.step(batches[2])
    graph_metrics = graphed.capture_graph(batches[2])
    assert graphed.graph_captured
    for batch in batches[3:]:
        eager_metrics = eager.step(batch)
        graph_metrics = graphed.step(batch)
    torch.cuda.synchronize()
    assert int(graphed.updates) == int(eager.updates) == 6
    for (name, a), b in zip(eager.state_dict().items(), graphed.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    host_eager, host_graph = metrics_to_host(eager_metrics), metrics_to_host(graph_metrics)
    assert set(host_eager) == set(host_graph)
    assert host_graph["wm/loss"] == pytest.approx(host_eager["wm/loss"], rel=1e-4)


@cuda
def test_a_captured_graph_refuses_another_batch_shape(random_batch) -> None:
    _, graphed = _agents()
    batch = {k: v.cuda() for k, v in random_batch(graphed.cfg).items()}
    graphed.step(batch)
    graphed.capture_graph(batch)
    with pytest.raises(ValueError, match="another batch shape"):
        graphed.step({k: v[:2] for k, v in batch.items()})
    graphed.release_graph()
    graphed.step({k: v[:2] for k, v in batch.items()})


@cuda
@pytest.mark.parametrize(
    "official", [(), ("optim.name=laprop", "critic.repval_scale=0.3", "train.replay_context=true", "train.online=true")]
)
def test_the_trainer_captures_the_update_on_a_gpu(tmp_path: Path, fast_config, official) -> None:
    from agent.training.trainer import Trainer

    cfg = fast_config("train.steps=160", "train.eval_every=0", "train.device=cuda", *official)
    trainer = Trainer(cfg, tmp_path, progress=False, tensorboard=False)
    trainer.train()
    trainer.close()
    assert trainer.agent.graph_captured and trainer.updates > 2
    resumed = Trainer(cfg, tmp_path, resume=True, progress=False, tensorboard=False)
    assert resumed.update_once()["wm/loss"] > 0
    resumed.close()


def test_cuda_graphs_need_a_cuda_device(random_batch) -> None:
    agent = DreamerAgent(make_config("tiny"))
    with pytest.raises(ValueError, match="--device cuda"):
        agent.capture_graph(random_batch(agent.cfg))
