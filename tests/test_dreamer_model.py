"""DreamerAgent: config, update metrics, acting, resume bit for bit, export step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agent.config import (
    PRESETS,
    config_from_dict,
    config_to_dict,
    load_config,
    make_config,
    save_config,
)
from agent.dreamer import ActingPolicy, BatchActingPolicy, DreamerAgent
from agent.dreamer.behavior import imagine
from agent.players.policy import Policy

torch.set_num_threads(1)

# docs/ARCHITECTURE.md, section "Metrics", without step/update/time and train/ eval/
METRIC_KEYS = {
    "wm/loss",
    "wm/rec",
    "wm/rew",
    "wm/con",
    "wm/dyn",
    "wm/rep",
    "wm/kl",
    "wm/grad_norm",
    "actor/loss",
    "actor/entropy",
    "actor/rand",
    "actor/std_q05",
    "actor/std_q50",
    "actor/std_q95",
    "actor/saturation",
    "actor/pg_term",
    "actor/ent_term",
    "actor/adv_abs",
    "actor/eta",
    "actor/entropy_step",
    "actor/weight_step",
    "actor/grad_norm",
    "ret/scale",
    "ret/at_floor",
    "ret/p05",
    "ret/p95",
    "critic/loss",
    "critic/value_mean",
    "critic/grad_norm",
}


def tiny_config(*overrides: str):
    return make_config("tiny", ["train.batch_size=4", "train.seq_len=12", "actor.horizon=5", *overrides])


# ---- config ----------------------------------------------------------------------


def test_presets_and_overrides_are_typed():
    assert set(PRESETS) == {"tiny", "small", "medium", "selfplay"}
    small = PRESETS["small"].model
    assert (small.deter, small.hidden, small.stoch, small.classes, small.units) == (512, 64, 32, 4, 64)
    assert PRESETS["medium"].model.deter == 2048 and PRESETS["medium"].model.classes == 16
    cfg = make_config(
        "small",
        [
            "actor.eta=1e-3",
            "train.share_cpu=yes",
            "train.steps=2e6",
            "train.eval_opponents=weak, strong",
            "actor.eta_schedule=linear",
        ],
    )
    assert cfg.actor.eta == 1e-3 and cfg.train.share_cpu is True and cfg.train.steps == 2_000_000
    assert cfg.train.eval_opponents == ("weak", "strong") and cfg.actor.eta_schedule == "linear"
    assert PRESETS["small"].actor.eta == 3e-4  # the preset itself is untouched


@pytest.mark.parametrize(
    "preset, overrides, message",
    [
        ("huge", [], "choices: tiny, small, medium"),
        ("tiny", ["optimizer.lr=1"], "choices: model, actor"),
        ("tiny", ["actor.temperature=1"], "choices: dist"),
        ("tiny", ["actor.dist=gaussian"], "bounded_normal, tanh_normal, discrete"),
        ("tiny", ["actor.dist=discrete", "actor.action_set=bins5"], "choices: bins3, joint25"),
        ("tiny", ["actor.unimix=0"], r"actor\.unimix=0\.0: must be in \(0\.0, 0\.5\]"),
        ("tiny", ["train.steps=ten"], "expected an int"),
        ("tiny", ["train.share_cpu=maybe"], "expected a bool"),
        ("tiny", ["actor.eta"], "section.field=value"),
        ("tiny", ["model.blocks=5"], "not divisible"),
    ],
)
def test_bad_overrides_name_the_problem(preset, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config(preset, overrides)


def test_config_json_round_trip_is_strict(tmp_path):
    cfg = make_config("tiny", ["actor.dist=tanh_normal", "train.eval_opponents=weak"])
    save_config(cfg, tmp_path / "config.json")
    assert load_config(tmp_path / "config.json") == cfg
    data = config_to_dict(cfg)
    data["actor"]["bogus"] = 1
    with pytest.raises(ValueError, match="bogus"):
        config_from_dict(data)
    with pytest.raises(ValueError, match="extra"):
        config_from_dict({**config_to_dict(cfg), "extra": {}})
    data = config_to_dict(cfg)
    data["model"]["deter"] = "64"
    with pytest.raises(ValueError, match="model.deter"):
        config_from_dict(data)


# ---- update ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "dist, dtype", [("bounded_normal", "float32"), ("tanh_normal", "float32"), ("bounded_normal", "bfloat16")]
)
def test_update_returns_every_metric_finite(dist, dtype, random_batch):
    torch.manual_seed(0)
    cfg = tiny_config(f"actor.dist={dist}", f"model.compute_dtype={dtype}")
    agent = DreamerAgent(cfg)
    before = [p.detach().clone() for p in agent.parameters()]
    metrics = agent.update(random_batch(cfg))
    assert set(metrics) == METRIC_KEYS
    for key, value in metrics.items():
        values = value if isinstance(value, list) else [value]
        assert all(isinstance(v, float) and math.isfinite(v) for v in values), key
    assert len(metrics["actor/entropy_step"]) == len(metrics["actor/weight_step"]) == cfg.actor.horizon
    assert metrics["wm/dyn"] >= 1.0 and metrics["wm/rep"] >= 1.0
    assert metrics["actor/eta"] == 3e-4 and metrics["ret/at_floor"] in (0.0, 1.0)
    assert 0.0 <= metrics["actor/saturation"] <= 1.0
    assert metrics["actor/std_q05"] <= metrics["actor/std_q50"] <= metrics["actor/std_q95"] <= 1.0
    assert metrics["actor/weight_step"][0] <= 1.0
    if dist == "bounded_normal":  # rand is exact and inside [0, 1] for this distribution
        assert 0.0 <= metrics["actor/rand"] <= 1.0
    changed = [not torch.equal(b, p) for b, p in zip(before, agent.parameters())]
    assert sum(changed) > len(changed) // 2
    assert int(agent.updates) == 1


CONTINUOUS_ONLY = {"actor/std_q05", "actor/std_q50", "actor/std_q95", "actor/saturation"}


@pytest.mark.parametrize("action_set", ["bins3", "joint25"])
def test_discrete_actor_update_returns_finite_metrics(action_set, random_batch):
    torch.manual_seed(0)
    cfg = tiny_config("actor.dist=discrete", f"actor.action_set={action_set}")
    agent = DreamerAgent(cfg)
    before = [p.detach().clone() for p in agent.actor.parameters()]
    metrics = agent.update(random_batch(cfg))
    assert set(metrics) == METRIC_KEYS - CONTINUOUS_ONLY  # no std, and actions are -1, 0, 1 by design
    for key, value in metrics.items():
        values = value if isinstance(value, list) else [value]
        assert all(isinstance(v, float) and math.isfinite(v) for v in values), key
    max_entropy = {"bins3": 4 * math.log(3), "joint25": math.log(25)}[action_set]
    assert 0.0 < metrics["actor/entropy"] <= max_entropy + 1e-4  # near-uniform at initialisation
    assert metrics["actor/rand"] == pytest.approx(metrics["actor/entropy"] / max_entropy)
    assert any(not torch.equal(b, p) for b, p in zip(before, agent.actor.parameters()))
    action, _ = agent.policy_step(
        torch.randn(3, 18), torch.zeros(3, 4), agent.initial_state(3), torch.ones(3, dtype=torch.bool)
    )
    assert action.shape == (3, 4) and set(action.unique().tolist()) <= {-1.0, 0.0, 1.0}


def test_world_model_learns_a_fixed_batch(random_batch):
    torch.manual_seed(0)
    cfg = tiny_config("optim.wm_lr=1e-3")
    agent = DreamerAgent(cfg)
    batch = random_batch(cfg)
    # observations around a fixed vector: their mean alone is learnable in a few steps
    batch["obs"] = torch.linspace(-4, 4, 18) + 0.1 * batch["obs"]
    first = agent.update(batch)
    for _ in range(15):
        last = agent.update(batch)
    assert last["wm/rec"] < 0.5 * first["wm/rec"]
    assert last["wm/rew"] < first["wm/rew"]


def test_eta_schedule_follows_the_update_counter(random_batch):
    cfg = tiny_config("actor.eta_schedule=linear", "actor.eta=1e-3", "actor.eta_final=0.0", "actor.eta_decay_steps=2")
    agent = DreamerAgent(cfg)
    batch = random_batch(cfg)
    etas = [agent.update(batch)["actor/eta"] for _ in range(3)]
    assert etas == pytest.approx([1e-3, 5e-4, 0.0])


@pytest.mark.parametrize("explore", ["explore.scale=0", "explore.scale=0.1", "actor.imag_fraction=0.25"])
def test_resume_is_bit_identical(explore, random_batch):
    torch.manual_seed(0)
    cfg = tiny_config(explore)
    batch, batch2 = random_batch(cfg, 1), random_batch(cfg, 2)
    a = DreamerAgent(cfg)
    a.update(batch)
    b = DreamerAgent(tiny_config(explore, "train.seed=123"))  # different init and random stream
    b.load_state_dict(a.state_dict())
    b.load_optimizer_state(a.optimizer_state())
    assert "retnorm.low" in a.state_dict() and "updates" in a.state_dict()
    assert any(k.startswith("slow_critic.") for k in a.state_dict())
    ma, mb = a.update(batch2), b.update(batch2)
    assert ma == mb
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


@pytest.mark.parametrize("dist", ["bounded_normal", "discrete"])
def test_imagination_draws_as_sampling_the_actor_then_the_prior(dist):
    """The rollout from pre-drawn noise is the step-by-step definition: sample the actor
    from its distribution, then `img_step`, draw for draw from the same generator."""
    torch.manual_seed(0)
    cfg = tiny_config(f"actor.dist={dist}", "model.compute_dtype=float32")
    agent = DreamerAgent(cfg)
    wm, actor = agent.wm, agent.actor
    deter = torch.randn(6, wm.deter_size)
    stoch = torch.nn.functional.one_hot(torch.randint(0, cfg.model.classes, (6, cfg.model.stoch)), cfg.model.classes)
    stoch = stoch.float().flatten(-2)
    imag = imagine(wm, actor, deter, stoch, 4, torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    feats, raws = [torch.cat([deter, stoch], -1)], []
    with torch.no_grad():
        for _ in range(4):
            dist_t = actor(feats[-1])
            raws.append(dist_t.sample(gen))
            deter, stoch = wm.img_step(deter, stoch, dist_t.to_action(raws[-1]), gen)
            feats.append(torch.cat([deter, stoch], -1))
    torch.testing.assert_close(imag.feat, torch.stack(feats), rtol=0, atol=1e-6)
    torch.testing.assert_close(imag.raw, torch.stack(raws), rtol=0, atol=1e-6)
    assert not imag.feat.requires_grad and imag.action.abs().max() <= 1.0


def test_compiled_update_is_the_eager_update(random_batch):
    """train.compile (torch.compile of the imagination step and the actor-critic losses on a
    CPU) changes rounding only: two updates give the same metrics and weights as eager ones."""
    cfg = tiny_config("model.compute_dtype=float32")
    compiled_cfg = tiny_config("model.compute_dtype=float32", "train.compile=true")
    batches = [random_batch(cfg, 1), random_batch(cfg, 2)]
    torch.manual_seed(0)
    eager = DreamerAgent(cfg)
    torch.manual_seed(0)
    compiled = DreamerAgent(compiled_cfg)
    for batch in batches:
        me, mc = eager.update(batch), compiled.update(batch)
    assert compiled._compiled is not None  # the compiled functions ran
    for key, value in me.items():
        assert mc[key] == pytest.approx(value, rel=1e-3, abs=1e-5), key
    for (name, pe), pc in zip(eager.state_dict().items(), compiled.state_dict().values()):
        torch.testing.assert_close(pc, pe, rtol=1e-3, atol=1e-5, msg=name)


def test_compute_dtype_auto_is_bfloat16_only_on_a_cpu_with_amx(monkeypatch):
    import agent.dreamer.agent as agent_module

    for amx, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(agent_module, "amx_available", lambda amx=amx: amx)
        assert agent_module.compute_dtype("auto", "cpu") == expected
        assert agent_module.compute_dtype("auto", "cuda") == torch.float32
        assert agent_module.compute_dtype("float32", "cpu") == torch.float32
        assert agent_module.compute_dtype("bfloat16", "cuda") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown compute dtype 'fp16'; choices: auto, float32, bfloat16"):
        make_config("small", ["model.compute_dtype=fp16"])


# ---- acting ----------------------------------------------------------------------


def test_policy_step_shapes_reset_and_determinism():
    torch.manual_seed(0)
    cfg = tiny_config()
    agent = DreamerAgent(cfg)
    obs = torch.randn(3, 18)
    state = agent.initial_state(3)
    assert state["deter"].shape == (3, 64) and state["stoch"].shape == (3, 32)
    assert not state["deter"].any() and not state["stoch"].any()
    first = torch.ones(3, dtype=torch.bool)
    a1, s1 = agent.policy_step(obs, torch.zeros(3, 4), state, first, deterministic=True)
    assert a1.shape == (3, 4) and (a1.abs() <= 1).all()
    assert torch.equal(s1["stoch"].reshape(3, 8, 4).sum(-1), torch.ones(3, 8))
    # a row flagged is_first ignores whatever state and previous action it is given
    noisy = {k: torch.randn_like(v) for k, v in s1.items()}
    a2, s2 = agent.policy_step(obs, torch.ones(3, 4), noisy, first, deterministic=True)
    assert torch.equal(a1, a2) and torch.equal(s1["deter"], s2["deter"])
    mixed = torch.tensor([True, False, True])
    a3, _ = agent.policy_step(obs, torch.ones(3, 4), noisy, mixed, deterministic=True)
    assert torch.equal(a3[0], a1[0]) and not torch.equal(a3[1], a1[1])
    # sampling: actions in [-1, 1], differ between calls
    b1, _ = agent.policy_step(obs, torch.zeros(3, 4), state, first, deterministic=False)
    b2, _ = agent.policy_step(obs, torch.zeros(3, 4), state, first, deterministic=False)
    assert (b1.abs() <= 1).all() and not torch.equal(b1, b2)


@pytest.mark.parametrize("dist", ["bounded_normal", "discrete"])
def test_sampled_acting_with_a_generator_is_reproducible_and_is_the_noise_fed_step(dist):
    torch.manual_seed(0)
    agent = DreamerAgent(tiny_config(f"actor.dist={dist}"))
    own = agent.generator().get_state()
    obs, prev, first = torch.randn(3, 18) * 3, torch.rand(3, 4) * 2 - 1, torch.zeros(3, dtype=torch.bool)
    state = {"deter": torch.randn(3, 64), "stoch": torch.zeros(3, 32)}

    def sampled(seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        gen = torch.Generator().manual_seed(seed)
        return agent.policy_step(obs, prev, state, first, deterministic=False, generator=gen)

    (a1, s1), (a2, s2), (a3, s3) = sampled(5), sampled(5), sampled(6)
    assert torch.equal(a1, a2) and torch.equal(s1["stoch"], s2["stoch"])
    assert not (torch.equal(a1, a3) and torch.equal(s1["stoch"], s3["stoch"]))
    assert torch.equal(agent.generator().get_state(), own)  # the agent's own stream is untouched
    # the exported sampled step, fed the same draws in the same order, takes the same step
    gen = torch.Generator().manual_seed(5)
    latent_noise = torch.rand(3, 8, generator=gen)
    if dist == "discrete":
        noise = torch.rand(3, agent.actor.noise_size, generator=gen)
    else:
        noise = torch.randn(3, 4, generator=gen)
    packed = torch.cat([state["deter"], state["stoch"]], -1)
    with torch.no_grad():
        action, next_state = agent.export_modules("sample")(obs, prev, packed, noise, latent_noise)
    torch.testing.assert_close(action, a1)
    torch.testing.assert_close(next_state, torch.cat([s1["deter"], s1["stoch"]], -1))
    with pytest.raises(ValueError, match="noise"):
        agent.export_modules("sample")(obs, prev, packed)


def test_acting_policy_matches_acting_step_and_is_a_policy():
    torch.manual_seed(0)
    agent = DreamerAgent(tiny_config())
    policy = ActingPolicy(agent)
    assert isinstance(policy, Policy)
    step = agent.export_modules()
    state = torch.zeros(1, step.state_size)
    prev = torch.zeros(1, 4)
    rng = np.random.default_rng(0)
    for _ in range(2):
        policy.reset()
        state, prev = torch.zeros(1, step.state_size), torch.zeros(1, 4)
        for _ in range(4):
            obs = rng.normal(size=18)
            act = policy.act(obs)
            assert act.shape == (4,) and act.dtype == np.float64
            with torch.no_grad():
                ref, state = step(torch.tensor(obs, dtype=torch.float32)[None], prev, state)
            prev = ref
            np.testing.assert_allclose(act, ref[0].numpy(), rtol=1e-6, atol=1e-6)


def _count_steps(agent: DreamerAgent) -> list[int]:
    """Record the batch size of every policy_step call of `agent`."""
    calls: list[int] = []
    step = agent.policy_step

    def counted(obs, *args, **kwargs):
        calls.append(len(obs))
        return step(obs, *args, **kwargs)

    agent.policy_step = counted
    return calls


def test_acting_policy_holds_its_action_for_the_repeat_and_restarts_at_reset():
    torch.manual_seed(0)
    agent = DreamerAgent(tiny_config())
    calls = _count_steps(agent)
    held, every = ActingPolicy(agent, action_repeat=3), ActingPolicy(agent)
    rng = np.random.default_rng(1)
    for _ in range(2):
        held.reset()
        every.reset()
        calls.clear()
        for t in range(8):
            obs = rng.normal(size=18)
            act = held.act(obs)
            if t % 3 == 0:  # decides on the round's first call, then every third
                expected = every.act(obs)
            np.testing.assert_array_equal(act, expected)
        assert len(calls) == 3 + 3  # 3 decisions of `held` (calls 0, 3, 6), 3 of `every`
    with pytest.raises(ValueError, match="action_repeat must be an integer >= 1, got 0"):
        ActingPolicy(agent, action_repeat=0)


def test_batch_acting_policy_holds_each_game_s_action_from_its_own_reset():
    torch.manual_seed(0)
    agent = DreamerAgent(tiny_config())
    twin = DreamerAgent(tiny_config())
    twin.load_state_dict(agent.state_dict())
    batch = BatchActingPolicy(twin, 3, action_repeat=2)
    singles = [ActingPolicy(agent, action_repeat=2) for _ in range(3)]
    calls = _count_steps(twin)
    rng = np.random.default_rng(2)
    batch.reset_rows(np.arange(3))
    for t in range(9):
        rows = np.array([0, 2]) if t == 4 else np.arange(3)  # game 1 sits one call out
        if t == 5:  # game 2 starts a round: its repeat restarts
            batch.reset_rows(np.array([2]))
            singles[2].reset()
        obs = rng.normal(size=(len(rows), 18))
        got = batch.act_rows(rows, obs)
        want = np.stack([singles[r].act(o) for r, o in zip(rows, obs)])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # one batched step per call that has a game due, over the games due only
    assert calls == [3, 3, 2, 2, 1, 2, 1]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy (TorchScript) exporter
def test_acting_step_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    agent = DreamerAgent(tiny_config())
    step = agent.export_modules()
    obs, prev = torch.randn(2, 18), torch.rand(2, 4) * 2 - 1
    state = torch.cat([torch.randn(2, step.deter_size), torch.zeros(2, step.stoch_size)], -1)
    path = tmp_path / "step.onnx"
    torch.onnx.export(
        step,
        (obs, prev, state),
        str(path),
        input_names=["obs", "prev_action", "state"],
        output_names=["action", "next_state"],
        dynamo=False,
        dynamic_axes={k: {0: "batch"} for k in ("obs", "prev_action", "state", "action", "next_state")},
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    action, next_state = sess.run(None, {"obs": obs.numpy(), "prev_action": prev.numpy(), "state": state.numpy()})
    with torch.no_grad():
        ref_action, ref_state = step(obs, prev, state)
    np.testing.assert_allclose(action, ref_action.numpy(), atol=1e-5)
    np.testing.assert_allclose(next_state, ref_state.numpy(), atol=1e-5)


def test_block_linear_keeps_groups_apart():
    from agent.dreamer.nets import BlockLinear

    layer = BlockLinear(8, 12, 4)
    x = torch.randn(2, 8, requires_grad=True)
    layer(x)[:, 3:6].sum().backward()  # output group 1 of 4
    grad = x.grad.abs().sum(0)
    assert grad[2:4].sum() > 0 and grad[:2].sum() == 0 and grad[4:].sum() == 0


@pytest.mark.slow
def test_actor_learns_the_action_that_the_reward_follows():
    """reward_t = x force of action_{t-1}: the world model must learn it and the
    actor, trained only in imagination, must push its x force to +1 (~1 min)."""
    torch.manual_seed(0)
    cfg = make_config(
        "tiny",
        [
            "train.batch_size=8",
            "train.seq_len=16",
            "actor.horizon=5",
            "optim.wm_lr=3e-3",
            "optim.actor_lr=1e-3",
            "optim.critic_lr=1e-3",
        ],
    )
    agent = DreamerAgent(cfg)
    g = torch.Generator().manual_seed(0)
    b, t = 8, 16
    is_first = torch.zeros(b, t, dtype=torch.bool)
    is_first[:, 0] = True
    for _ in range(350):
        action = torch.rand(b, t, 4, generator=g) * 2 - 1
        agent.update(
            {
                "obs": torch.randn(b, t, 18, generator=g) * 0.1,
                "action": action,
                "reward": torch.cat([torch.zeros(b, 1), action[:, :-1, 0]], 1),
                "is_first": is_first,
                "is_terminal": torch.zeros(b, t, dtype=torch.bool),
            }
        )
    act, _ = agent.policy_step(
        torch.randn(64, 18, generator=g) * 0.1,
        torch.zeros(64, 4),
        agent.initial_state(64),
        torch.ones(64, dtype=torch.bool),
        deterministic=True,
    )
    assert act[:, 0].mean() > 0.9


def test_a_replayed_sequence_starts_from_its_context(random_batch):
    """With the replay's context, the world model filters from the given latent, not zeros."""
    cfg = tiny_config("train.replay_context=true")
    batch = random_batch(cfg)
    batch["is_first"][:, 0] = False
    b, m = batch["obs"].shape[0], cfg.model
    context = {
        "start_deter": torch.randn(b, m.deter),
        "start_stoch": torch.randint(0, m.classes, (b, m.stoch)),
        "start_action": torch.rand(b, 4) * 2 - 1,
    }
    losses = []
    for extra in ({}, context):
        torch.manual_seed(0)
        agent = DreamerAgent(cfg)
        losses.append(agent.update({**batch, **extra})["wm/loss"])
        assert agent.posterior[0].shape == (b, batch["obs"].shape[1], m.deter)
    assert losses[0] != losses[1]
    batch["is_first"][:, 0] = True  # a sequence that starts an episode ignores the context
    torch.manual_seed(0)
    plain = DreamerAgent(cfg).update(batch)["wm/loss"]
    torch.manual_seed(0)
    assert DreamerAgent(cfg).update({**batch, **context})["wm/loss"] == plain
