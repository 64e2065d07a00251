"""DreamerAgent: the world model, actor and critic, one training update, and acting.

The update is the whole DreamerV3 step: the world-model loss on replayed sequences
(world_model.py) and one Adam step, then imagination from every posterior state and
the actor and critic losses (behavior.py), one Adam step each, then the slow critic's
EMA. Optimiser: Adam as in the 2023 paper (world model lr 1e-4 eps 1e-8, actor and
critic 3e-5 eps 1e-5, global-norm clipping 1000 / 100 / 100), no warm-up.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.profiler import record_function

from agent.config import Config
from agent.dreamer.behavior import behavior_losses, eta_at, imagine, rollout_step
from agent.dreamer.explore import Disagreement
from agent.dreamer.maths import ReturnNormalizer, replay_return, twohot_mean, twohot_nll
from agent.dreamer.nets import Actor, TwoHotHead, official_init, onehot_at
from agent.dreamer.optim import LaProp
from agent.dreamer.world_model import WorldModel

BATCH_KEYS = ("obs", "action", "reward", "is_first", "is_terminal")
CONTEXT_KEYS = ("start_deter", "start_stoch", "start_action")  # the replay's context, optional
POLICIES = ("mean", "sample")  # how an exported step acts: posterior and actor modes, or samples


class ActingStep(nn.Module):
    """One acting step on the packed state, for ONNX export.

    forward(obs [B, 18], prev_action [B, 4], state [B, S]) -> (action [B, 4],
    next_state [B, S]), the graph of docs/ARCHITECTURE.md: the state is deter first,
    then the flattened one-hot stochastic part; the initial state is zeros. policy
    'mean' is the deterministic step (posterior mode, actor mode); 'sample' takes two
    more inputs, noise [B, noise_size] (the actor's, of kind noise_kind) and
    latent_noise [B, latents] (uniform, the posterior's), and returns the sample they pick.
    """

    def __init__(self, agent: DreamerAgent, policy: str = "mean"):
        super().__init__()
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; choices: {', '.join(POLICIES)}")
        self.agent, self.policy = agent, policy
        self.deter_size = agent.wm.deter_size
        self.stoch_size = agent.wm.stoch_size
        self.state_size = self.deter_size + self.stoch_size
        self.noise_size, self.noise_kind = agent.actor.noise_size, agent.actor.noise_kind
        self.latents = agent.cfg.model.stoch

    def forward(
        self,
        obs: Tensor,
        prev_action: Tensor,
        state: Tensor,
        noise: Tensor | None = None,
        latent_noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        if (self.policy == "sample") != (noise is not None and latent_noise is not None):
            raise ValueError("policy 'sample' takes noise and latent_noise, policy 'mean' neither")
        deter, stoch = state[:, : self.deter_size], state[:, self.deter_size :]
        action, deter, stoch = self.agent.acting_step(obs, prev_action, deter, stoch, noise, latent_noise)
        return action, torch.cat([deter, stoch], -1)


class DreamerAgent(nn.Module):
    """A DreamerV3 agent for an 18-value observation and a 4-value action.

    Training: `update(batch)` with batch tensors obs [B, T, 18], action [B, T, 4],
    reward [B, T], is_first [B, T] bool, is_terminal [B, T] bool, where reward_t and
    is_terminal_t came with obs_t and action_t was taken after seeing obs_t. Returns
    the metrics of docs/ARCHITECTURE.md ("Metrics", without step/update/time/train/eval).

    Acting: `initial_state(B)` and `policy_step(obs, prev_action, state, is_first,
    deterministic, generator)`; the state is {'deter': [B, D], 'stoch': [B, L*C]}.

    Export: `export_modules(policy)` returns an `ActingStep` module, pure tensor-in
    tensor-out (policy 'mean': categorical mode, actor mode, for bounded_normal the mean
    clipped to [-1, 1]; 'sample': the samples the noise inputs pick) and traceable with
    `torch.onnx.export(step, (obs, prev_action, state), ..., dynamo=False)`; it also
    carries deter_size, stoch_size and state_size. `acting_step(obs, prev_action,
    deter, stoch, noise, latent_noise)` is the same step on the unpacked state.

    Resume: `state_dict()` holds the networks, the slow critic, the return
    normaliser's EMAs and the update counter (for the eta schedule);
    `optimizer_state()` holds the three Adam states and the agent's own random
    generator, so a resumed agent continues bit for bit.
    """

    updates: Tensor

    def __init__(self, cfg: Config, obs_dim: int = 18, act_dim: int = 4):
        super().__init__()
        self.cfg, self.obs_dim, self.act_dim = cfg, obs_dim, act_dim
        m, a = cfg.model, cfg.actor
        self.wm = WorldModel(m, obs_dim, act_dim)
        feat = self.wm.feat_size
        self.actor = Actor(feat, act_dim, m.units, m.layers, a.dist, a.min_std, a.max_std, a.action_set, a.unimix)
        self.critic = TwoHotHead(feat, m.units, m.layers, m.bins)
        if m.init == "official":
            official_init(self)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.retnorm = ReturnNormalizer(a.retnorm_decay, a.retnorm_limit, a.retnorm_low, a.retnorm_high)
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))
        e = cfg.explore
        # the intrinsic-reward ensemble exists only when enabled, so a run without it
        # has exactly the official agent's parameters and checkpoint
        self.explore: Disagreement | None = None
        if e.scale > 0:
            self.explore = Disagreement(feat, act_dim, self.wm.stoch_size, m.units, e.layers, e.members)
        self.optimizers = self._make_optimizers()
        self._generator: torch.Generator | None = None
        # the entropy scale of the current update, a buffer so a captured graph reads it
        self.register_buffer("_eta", torch.zeros((), dtype=torch.float64), persistent=False)
        self._compiled: tuple[Any, Any] | None = None  # (rollout step, behaviour losses), built at the first update
        self.posterior: tuple[Tensor, Tensor] | None = None  # the last update's posterior states
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static_in: dict[str, Tensor] = {}
        self._static_out: dict[str, Tensor] = {}
        self._static_posterior: tuple[Tensor, Tensor] | None = None

    # ---- randomness ----------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.updates.device

    def generator(self) -> torch.Generator:
        """The agent's own random stream, on the agent's device, seeded by train.seed."""
        if self._generator is None or self._generator.device != self.device:
            self._generator = torch.Generator(self.device)
            self._generator.manual_seed(self.cfg.train.seed)
        return self._generator

    # ---- acting --------------------------------------------------------------------

    def initial_state(self, batch: int) -> dict[str, Tensor]:
        return {
            "deter": torch.zeros(batch, self.wm.deter_size, device=self.device),
            "stoch": torch.zeros(batch, self.wm.stoch_size, device=self.device),
        }

    @torch.no_grad()
    def policy_step(
        self,
        obs: Tensor,
        prev_action: Tensor,
        state: dict[str, Tensor],
        is_first: Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """One acting step for B games; rows with is_first start from the initial state.

        Deterministic: posterior mode and the actor's mean; otherwise samples, from
        `generator` when given (the agent's own random stream is then left alone), else
        from the agent's generator. Returns the action [B, 4] in [-1, 1] and the new state.
        """
        dev = self.device
        obs = torch.as_tensor(obs, dtype=torch.float32, device=dev)
        keep = (~torch.as_tensor(is_first, dtype=torch.bool, device=dev)).float().unsqueeze(-1)
        prev_action = torch.as_tensor(prev_action, dtype=torch.float32, device=dev) * keep
        deter, stoch = state["deter"].to(dev) * keep, state["stoch"].to(dev) * keep
        gen = None if deterministic else (generator if generator is not None else self.generator())
        deter, stoch = self.wm.obs_step(deter, stoch, prev_action, obs, gen)
        dist = self.actor(torch.cat([deter, stoch], -1))
        action = dist.mode() if gen is None else dist.to_action(dist.sample(gen))
        return action, {"deter": deter, "stoch": stoch}

    def acting_step(
        self,
        obs: Tensor,
        prev_action: Tensor,
        deter: Tensor,
        stoch: Tensor,
        noise: Tensor | None = None,
        latent_noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One step, tensor in and out (what the ONNX graph contains).

        Without noise the deterministic step (posterior mode, actor mode). With
        latent_noise [B, L] (uniform in [0, 1), one per latent) the posterior sample it
        picks, and with noise [B, actor.noise_size] the actor's sample: the same step as
        `policy_step(deterministic=False)`, whose generator draws these numbers in this
        order (the posterior's, then the actor's).
        """
        if latent_noise is None:
            deter, stoch = self.wm.obs_step(deter, stoch, prev_action, obs, None)
        else:  # wm.obs_step with the posterior's uniform draws given
            deter = self.wm.gru(deter, stoch, self.wm.in_action(prev_action))
            probs = self.wm.post_probs(deter, self.wm.post_embed(self.wm.embed(obs)))
            stoch = onehot_at(probs, latent_noise.unsqueeze(-1)).flatten(-2)
        dist = self.actor(torch.cat([deter, stoch], -1))
        action = dist.mode() if noise is None else dist.to_action(dist.sample_from(noise))
        return action, deter, stoch

    def export_modules(self, policy: str = "mean") -> ActingStep:
        return ActingStep(self, policy).eval()

    # ---- training ------------------------------------------------------------------

    def update(self, batch: dict[str, Tensor]) -> dict[str, float | list[float]]:
        """One DreamerV3 update (`step`), its metrics as Python numbers."""
        return metrics_to_host(self.step(batch))

    def step(self, batch: dict[str, Tensor], update_index: int | None = None) -> dict[str, Tensor]:
        """One DreamerV3 update: world model, then actor and critic in imagination.

        Returns the metrics as tensors on the agent's device, without waiting for them:
        nothing in the update waits on the device, so a caller that sums the metrics on
        the device and reads them every few hundred updates never stalls a GPU.
        `update_index` (the number of updates done so far) spares reading the counter
        back from the device for the eta schedule. With `capture_graph()` on CUDA the
        whole update is replayed from a CUDA graph.
        """
        tensors = self._check_batch(batch)
        eta = eta_at(self.cfg.actor, int(self.updates) if update_index is None else update_index)
        self._eta.fill_(eta)
        if self._graph is not None:
            for name, value in tensors.items():
                self._static_in[name].copy_(value)
            self._graph.replay()
            self.posterior = self._static_posterior
            return dict(self._static_out)
        return self._step(tensors)

    def _check_batch(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        missing = [k for k in BATCH_KEYS if k not in batch]
        if missing:
            raise ValueError(f"update batch lacks {missing}; it needs {', '.join(BATCH_KEYS)}")
        dev = self.device
        out = {k: torch.as_tensor(batch[k]).to(dev, torch.bool if k in ("is_first", "is_terminal") else torch.float32)
               for k in BATCH_KEYS}  # fmt: skip
        if "start_deter" in batch:  # the replay's context: the latent and action before the sequence
            m = self.cfg.model
            out["start_deter"] = torch.as_tensor(batch["start_deter"]).to(dev, torch.float32)
            stoch = torch.as_tensor(batch["start_stoch"]).to(dev, torch.int64)
            out["start_stoch"] = nn.functional.one_hot(stoch, m.classes).float().flatten(-2)
            out["start_action"] = torch.as_tensor(batch["start_action"]).to(dev, torch.float32)
        obs, action, reward = out["obs"], out["action"], out["reward"]
        if obs.ndim != 3 or action.shape[:2] != obs.shape[:2] or reward.shape != obs.shape[:2]:
            raise ValueError(
                f"update batch shapes disagree: obs {tuple(obs.shape)}, "
                f"action {tuple(action.shape)}, reward {tuple(reward.shape)}"
            )
        if self._graph is not None and (
            set(out) != set(self._static_in) or any(out[k].shape != self._static_in[k].shape for k in out)
        ):
            raise ValueError("the update was captured as a CUDA graph for another batch shape")
        return out

    def _make_optimizers(self) -> dict[str, tuple[str, torch.optim.Optimizer, list[nn.Module], float]]:
        """name -> (label, optimiser, modules it steps, global-norm clip or 0 for none)."""
        o, modules = self.cfg.optim, {"wm": self.wm, "actor": self.actor, "critic": self.critic}
        if o.name == "laprop":
            params = [p for m in modules.values() for p in m.parameters()]
            laprop = LaProp(params, o.lr, (o.beta1, o.beta2), o.eps, o.agc, o.pmin, o.warmup)
            opts = {"all": ("world model, actor and critic", laprop, list(modules.values()), 0.0)}
        else:
            opts = {
                "wm": ("world model", torch.optim.Adam(self.wm.parameters(), lr=o.wm_lr, eps=o.wm_eps), [self.wm],
                       o.wm_clip),
                "actor": ("actor", torch.optim.Adam(self.actor.parameters(), lr=o.actor_lr, eps=o.ac_eps),
                          [self.actor], o.actor_clip),
                "critic": ("critic", torch.optim.Adam(self.critic.parameters(), lr=o.critic_lr, eps=o.ac_eps),
                           [self.critic], o.critic_clip),
            }  # fmt: skip
        if self.explore is not None:
            e = self.cfg.explore
            adam = torch.optim.Adam(self.explore.parameters(), lr=e.lr, eps=o.wm_eps)
            opts["explore"] = ("explore ensemble", adam, [self.explore], e.clip)
        return opts

    def _optimise(self, loss: Tensor, names: tuple[str, ...], norms: dict[str, nn.Module]) -> dict[str, Tensor]:
        """Backward `loss`, step the optimisers `names` (clipping the Adam ones first); the
        gradient norms of the `norms` modules before any clipping."""
        for name in names:
            self.optimizers[name][1].zero_grad(set_to_none=True)
        loss.backward()
        result = {key: _grad_norm(module) for key, module in norms.items()}
        for name in names:
            _, opt, modules, clip = self.optimizers[name]
            if clip > 0:
                nn.utils.clip_grad_norm_([p for m in modules for p in m.parameters()], clip)
            opt.step()
        return result

    def _step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The update on checked device tensors (what `capture_graph` records).

        Sequential (critic.repval_scale 0): the world model steps first, then the actor
        and critic learn in imagination from its updated posteriors. Joint (repval_scale
        > 0, the official structure): every loss, the replay value loss among them, is
        computed with the pre-update parameters and they step together.
        """
        cfg, gen = self.cfg, self.generator()
        obs, action, reward = batch["obs"], batch["action"], batch["reward"]
        is_first, is_terminal = batch["is_first"], batch["is_terminal"]
        joint = cfg.critic.repval_scale > 0
        self.train()

        # world model: action_{t-1} is the previous action, zero where the episode starts;
        # with the replay's context the sequence starts from the latent before it
        start = None
        first_action = torch.zeros_like(action[:, :1])
        if "start_deter" in batch:
            start = (batch["start_deter"], batch["start_stoch"])
            first_action = batch["start_action"].unsqueeze(1)
        prev_action = torch.cat([first_action, action[:, :-1]], 1)
        prev_action = prev_action * (~is_first).unsqueeze(-1).float()
        bf16 = compute_dtype(cfg.model.compute_dtype, self.device) == torch.bfloat16
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)
        rollout, losses = self._update_functions()
        with record_function("dreamer/wm_loss"):
            wm_out = self.wm.loss(obs, prev_action, reward, is_first, is_terminal, gen, keep_graph=joint, start=start)
        # the posterior states, for a replay that keeps them (the context of later samples)
        self.posterior = (wm_out.deter.detach(), wm_out.stoch.detach())
        wm_names = tuple(n for n in self.optimizers if n in ("wm", "all"))
        grads: dict[str, Tensor] = {}
        if not joint:
            with record_function("dreamer/wm_backward"):
                grads = self._optimise(wm_out.loss, wm_names, {"wm/grad_norm": self.wm})

        out: dict[str, Tensor] = {}
        if self.explore is not None:
            with record_function("dreamer/explore"):
                feat = torch.cat([wm_out.deter, wm_out.stoch], -1).detach()
                loss = self.explore.loss(feat[:, :-1], action[:, :-1], wm_out.stoch[:, 1:].detach(), ~is_first[:, 1:])
                self._optimise(loss, ("explore",), {})
                out["explore/loss"] = loss.detach()

        # actor and critic in imagination from every posterior state (or a random share of them)
        start_deter = wm_out.deter.detach().flatten(0, 1)
        start_stoch = wm_out.stoch.detach().flatten(0, 1)
        start_cont = (~is_terminal).flatten().float()
        pick = None
        if cfg.actor.imag_fraction < 1.0:
            count = max(1, round(cfg.actor.imag_fraction * start_cont.shape[0]))
            pick = torch.rand(start_cont.shape, generator=gen, device=start_cont.device).topk(count).indices
            start_deter, start_stoch, start_cont = start_deter[pick], start_stoch[pick], start_cont[pick]
        with record_function("dreamer/imagine"), autocast:
            imag = imagine(self.wm, self.actor, start_deter, start_stoch, cfg.actor.horizon, gen, rollout)
        bonus = None
        if self.explore is not None:
            bonus = self.explore.bonus(imag.feat[:-1], imag.action)
            out["explore/bonus"] = bonus.mean()
            bonus = cfg.explore.scale * bonus
        with record_function("dreamer/ac_loss"), autocast:
            beh = losses(
                self.wm,
                self.actor,
                self.critic,
                self.slow_critic,
                self.retnorm,
                imag,
                start_cont,
                cfg.actor,
                cfg.critic,
                self._eta,
                gen,
                bonus,
            )
        loss = beh.actor_loss + beh.critic_loss  # disjoint parameters
        if joint:
            with record_function("dreamer/repval"):
                repval = self._repval_loss(wm_out, reward, is_first, is_terminal, beh.start_return, pick)
                out["critic/repval"] = repval.detach()
            loss = loss + wm_out.loss + cfg.critic.repval_scale * repval
        with record_function("dreamer/ac_backward"):
            norms = {"actor/grad_norm": self.actor, "critic/grad_norm": self.critic}
            if joint:
                norms["wm/grad_norm"] = self.wm
            names = tuple(n for n in self.optimizers if n != "explore" and (joint or n != "wm"))
            grads.update(self._optimise(loss, names, norms))
            with torch.no_grad():
                for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters()):
                    slow.lerp_(fast, cfg.critic.slow_rate)
        self.updates += 1

        out = {"wm/loss": wm_out.loss.detach(), **{f"wm/{k}": v for k, v in wm_out.parts.items()}, **out}
        out.update(
            {
                "wm/grad_norm": grads["wm/grad_norm"],
                "actor/loss": beh.actor_loss.detach(),
                "actor/grad_norm": grads["actor/grad_norm"],
                "critic/loss": beh.critic_loss.detach(),
                "critic/grad_norm": grads["critic/grad_norm"],
            }
        )
        out.update(beh.metrics)
        out["actor/eta"] = self._eta.clone()
        return out

    def _repval_loss(
        self, wm_out: Any, reward: Tensor, is_first: Tensor, is_terminal: Tensor, start_return: Tensor,
        pick: Tensor | None,
    ) -> Tensor:  # fmt: skip
        """The replay value loss (official `repl_loss`), the critic on the replayed posteriors.

        Targets are lambda-returns over the real rewards and terminals of the sequence,
        bootstrapped at each step from the imagined return of that state (`start_return`,
        the lambda-return at imagination step 0); states imagination did not start from
        (actor.imag_fraction < 1) bootstrap from the critic's own value instead. The
        critic's input keeps its graph, so the loss also trains the world model, and the
        slow critic regularises as in imagination. A row whose successor starts a new
        episode has no target (weight 0).
        """
        cfg, bins = self.cfg, self.wm.bins
        gamma = 1.0 - 1.0 / cfg.actor.discount_horizon
        feat = torch.cat([wm_out.deter, wm_out.stoch], -1)  # [B, T, F], with graph
        value_logits = self.critic(feat)
        with torch.no_grad():
            if pick is None:
                boot = start_return.reshape(reward.shape)
            else:
                boot = twohot_mean(value_logits.softmax(-1), bins).flatten()
                boot[pick] = start_return
                boot = boot.reshape(reward.shape)
            last = torch.cat([is_first[:, 1:], torch.zeros_like(is_first[:, :1])], 1).float()
            ret = replay_return(last, is_terminal.float(), reward, boot, gamma, cfg.actor.lam)  # [B, T-1]
            slow_value = twohot_mean(torch.softmax(self.slow_critic(feat.detach()[:, :-1]), -1), bins)
            weight = 1.0 - last[:, :-1]
        nll = twohot_nll(value_logits[:, :-1], ((ret, 1.0), (slow_value, cfg.critic.slow_reg)), bins)
        return (weight * nll).mean()

    def _update_functions(self) -> tuple[Any, Any]:
        """The imagination step and the actor-critic losses the update calls: `rollout_step`
        and `behavior_losses` as they are, or with train.compile on a CPU their torch.compile
        copies. Compiled, the elementwise work of each imagined step and of the losses (norms,
        gates, 255-bin softmaxes, two-hot decoding) runs as a few fused loops instead of
        hundreds of passes over [1,024 x 512] tensors; the maths is the same up to float
        rounding. Compiling takes 15-30 s at the first update of a process (less once the
        compiler's cache in the temporary directory holds it). On a GPU the CUDA graph
        (train.cuda_graph) takes this role and the eager functions are captured instead."""
        if not (self.cfg.train.compile and self.device.type == "cpu"):
            return rollout_step, behavior_losses
        if self._compiled is None:
            self._compiled = (
                torch.compile(rollout_step, dynamic=False),
                torch.compile(behavior_losses, dynamic=False),
            )
        return self._compiled

    @property
    def graph_captured(self) -> bool:
        return self._graph is not None

    def capture_graph(self, batch: dict[str, Tensor], update_index: int | None = None) -> dict[str, Tensor]:
        """One update on `batch` (as `step`), then record the update as one CUDA graph.

        Later `step` calls with batches of the same shape copy them into the graph's
        input buffers and replay it: the host issues one launch per update instead of
        ~10,000 kernel launches, and the maths is the same. The update on `batch` runs
        eagerly on a side stream, as capture needs; its metrics are returned. The Adam
        states move to the device (`capturable`), and the agent's generator advances
        inside the graph. CUDA only.
        """
        if self.device.type != "cuda":
            raise ValueError("CUDA graphs need the agent on a CUDA device; train with --device cuda")
        tensors = self._check_batch(batch)
        self._eta.fill_(eta_at(self.cfg.actor, int(self.updates) if update_index is None else update_index))
        self._static_in = {k: v.clone() for k, v in tensors.items()}
        for opt in self._optimizers():
            for group in opt.param_groups:
                group["capturable"] = True
            for state in opt.state.values():
                if "step" in state:
                    state["step"] = state["step"].to(self.device, torch.float32)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            metrics = {k: v.clone() for k, v in self._step(self._static_in).items()}
            warm_posterior = tuple(x.clone() for x in self.posterior)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        if hasattr(graph, "register_generator_state"):
            graph.register_generator_state(self.generator())
        for opt in self._optimizers():
            opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            self._static_out = self._step(self._static_in)
        # the capture ran nothing: its posterior buffers fill at the first replay, and until
        # then the posterior is the warm-up update's (the one this call made)
        self._static_posterior, self.posterior = self.posterior, warm_posterior
        self._graph = graph
        return metrics

    def release_graph(self) -> None:
        """Go back to eager updates (for example before saving or changing the batch shape)."""
        self._graph = None
        self._static_in, self._static_out, self._static_posterior = {}, {}, None

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        return [opt for _, opt, _, _ in self.optimizers.values()]

    # ---- resume --------------------------------------------------------------------

    def optimizer_state(self) -> dict[str, Any]:
        state = {name: _portable(opt) for name, (_, opt, _, _) in self.optimizers.items()}
        state.update(rng=self.generator().get_state(), rng_device=self.device.type)
        return state

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        """Restore the optimisers and the random stream (when saved on this device type).

        The state is deep-copied first: torch's optimisers keep the given tensors, so
        two agents loaded from one in-memory state would otherwise share their moments.
        A state that lacks a part, or whose part does not fit, is a ValueError naming it.
        """
        parts = {name: (label, opt) for name, (label, opt, _, _) in self.optimizers.items()}
        if not isinstance(state, dict):
            raise ValueError(f"the optimiser state is a {type(state).__name__}, not a dict")
        if self.explore is not None and "explore" not in state:
            raise ValueError("the optimiser state has no explore ensemble; was explore.scale changed?")
        restore_rng = state.get("rng_device") == self.device.type
        missing = [k for k in (*parts, *(["rng"] if restore_rng else [])) if k not in state]
        if missing:
            hint = "; was optim.name changed?" if ("all" in parts) != ("all" in state) else ""
            raise ValueError(f"the optimiser state lacks {missing}{hint}")
        state = copy.deepcopy(state)
        loads = [(label, opt.load_state_dict, state[key]) for key, (label, opt) in parts.items()]
        if restore_rng:
            loads.append(("random stream", lambda rng: self.generator().set_state(rng.cpu()), state["rng"]))
        for label, load, value in loads:
            try:
                load(value)
            except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
                name = type(exc).__name__
                raise ValueError(f"the optimiser state of the {label} does not fit: {name}: {exc}") from exc

    def load_optimizer_moments(self, state: dict[str, Any]) -> None:
        """Take another agent's optimiser moments (step counts and running averages) for the
        same parameters, keeping this agent's hyperparameters and random stream: a run
        started from another's weights then takes the steps that run would have taken,
        instead of a fresh optimiser's first steps of a full learning rate in every weight.
        A state that lacks a part or whose moments do not fit is a ValueError naming it.
        """
        parts = {name: (label, opt) for name, (label, opt, _, _) in self.optimizers.items()}
        if not isinstance(state, dict):
            raise ValueError(f"the optimiser state is a {type(state).__name__}, not a dict")
        missing = [k for k in parts if k not in state]
        if missing:
            raise ValueError(f"the optimiser state lacks {missing}; was optim.name or explore.scale changed?")
        for key, (label, opt) in parts.items():
            own = opt.state_dict()
            saved = state[key]
            sizes = [len(g["params"]) for g in own["param_groups"]]
            try:
                saved_sizes = [len(g["params"]) for g in saved["param_groups"]]
                moments = copy.deepcopy(saved["state"])
            except (KeyError, TypeError) as exc:
                raise ValueError(f"the optimiser state of the {label} is not an optimiser's: {exc!r}") from exc
            if sizes != saved_sizes:
                raise ValueError(f"the optimiser state of the {label} holds {saved_sizes} parameters, this one {sizes}")
            opt.load_state_dict({**own, "state": moments})
            params = [p for group in opt.param_groups for p in group["params"]]
            for index, param in enumerate(params):
                for name, value in opt.state.get(param, {}).items():
                    if torch.is_tensor(value) and value.dim() > 0 and value.shape != param.shape:
                        raise ValueError(
                            f"the optimiser state of the {label} does not fit: parameter {index} "
                            f"{tuple(param.shape)}, its {name} {tuple(value.shape)}"
                        )


def _portable(opt: torch.optim.Optimizer) -> dict[str, Any]:
    """An optimiser's state dict that loads on any device: a CUDA graph's `capturable`
    setting (device-side step counters) is the graph's business, not the checkpoint's."""
    state = opt.state_dict()
    state["param_groups"] = [{**group, "capturable": False} if "capturable" in group else group
                             for group in state["param_groups"]]  # fmt: skip
    return state


def optimizer_names(cfg: Config) -> tuple[str, ...]:
    """The names of the optimisers a DreamerAgent with this config keeps (its checkpoint's parts)."""
    names = ("all",) if cfg.optim.name == "laprop" else ("wm", "actor", "critic")
    return names + (("explore",) if cfg.explore.scale > 0 else ())


def amx_available() -> bool:
    """Whether this CPU has AMX tiles (Intel Sapphire Rapids and later), whose bfloat16
    matrix products run several times faster than float32 ones."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def compute_dtype(name: str, device: torch.device | str) -> torch.dtype:
    """The matmul precision of imagination and the actor-critic losses for model.compute_dtype.

    'auto' is bfloat16 on a CPU with AMX, where it makes the small preset's update about
    1.25x faster (docs/results.md, "Training speed"), and float32 elsewhere: CPUs without
    AMX run bfloat16 products slower than float32 ones, and a GPU gains nothing measurable.
    """
    if name == "bfloat16" or (name == "auto" and torch.device(device).type == "cpu" and amx_available()):
        return torch.bfloat16
    return torch.float32


def describe_update(cfg: Config, device: torch.device | str) -> str:
    """How the update computes on `device`, for the line a training job starts with."""
    dtype = compute_dtype(cfg.model.compute_dtype, device)
    parts = [f"imagination in {str(dtype).removeprefix('torch.')}"]
    if dtype == torch.bfloat16 and cfg.model.compute_dtype == "auto":
        parts[0] += " (this CPU has AMX)"
    if cfg.train.compile and torch.device(device).type == "cpu":
        parts.append("compiled (the first update takes 15-30 s longer)")
    return "update: " + ", ".join(parts)


def metrics_to_host(metrics: dict[str, Tensor]) -> dict[str, float | list[float]]:
    """Metric tensors of `DreamerAgent.step` as Python numbers (scalars) and lists (per imagined step)."""
    return {k: v.tolist() for k, v in metrics.items()}


def _grad_norm(module: nn.Module) -> Tensor:
    """The global norm of the gradients a backward left on `module`'s parameters."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros((), device=next(module.parameters()).device)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def _check_repeat(action_repeat: int) -> int:
    if isinstance(action_repeat, bool) or not isinstance(action_repeat, int) or action_repeat < 1:
        raise ValueError(f"action_repeat must be an integer >= 1, got {action_repeat!r}")
    return action_repeat


class ActingPolicy:
    """A DreamerAgent as a `Policy` (agent/players/policy.py), one game, deterministic by default;
    `deterministic=False` samples from `generator`, or from the agent's own when None.

    With `action_repeat` k the agent decides on every k-th call after `reset` (the first
    call included) and answers the held action in between, as it was trained."""

    def __init__(
        self,
        agent: DreamerAgent,
        deterministic: bool = True,
        generator: torch.Generator | None = None,
        action_repeat: int = 1,
    ):
        self.agent, self.deterministic, self.generator = agent, deterministic, generator
        self.action_repeat = _check_repeat(action_repeat)
        self.reset()

    def reset(self) -> None:
        self.state = self.agent.initial_state(1)
        self.prev_action = torch.zeros(1, self.agent.act_dim, device=self.agent.device)
        self._hold = 0  # calls left that answer the held action
        self._held = np.zeros(self.agent.act_dim)

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self._hold > 0:
            self._hold -= 1
            return self._held.copy()
        obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(1, -1), device=self.agent.device)
        first = torch.zeros(1, dtype=torch.bool, device=self.agent.device)
        action, self.state = self.agent.policy_step(
            obs_t, self.prev_action, self.state, first, self.deterministic, self.generator
        )
        self.prev_action = action
        self._held = action[0].cpu().numpy().astype(np.float64)
        self._hold = self.action_repeat - 1
        return self._held.copy()


class BatchActingPolicy:
    """A DreamerAgent as a `BatchPolicy` (agent/players/policy.py): n games, one batched step.

    Deterministic (posterior mode, actor mean) by default; `deterministic=False` samples
    from the agent's own generator, as when collecting data, or from `generator` when
    given (a reproducible evaluation that leaves the agent's stream alone). With
    `action_repeat` k each game's row decides on every k-th call after its `reset_rows`
    (the first included) and answers its held action in between.
    """

    def __init__(
        self,
        agent: DreamerAgent,
        games: int,
        deterministic: bool = True,
        generator: torch.Generator | None = None,
        action_repeat: int = 1,
    ):
        self.agent, self.deterministic, self.generator = agent, deterministic, generator
        self.action_repeat = _check_repeat(action_repeat)
        self.state = agent.initial_state(games)
        self.prev_action = torch.zeros(games, agent.act_dim, device=agent.device)
        self._hold = np.zeros(games, np.int64)  # per game: calls left that answer the held action
        self._held = np.zeros((games, agent.act_dim))

    def reset_rows(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, np.int64)
        index = torch.as_tensor(rows, device=self.agent.device)
        for value in self.state.values():
            value[index] = 0.0
        self.prev_action[index] = 0.0
        self._hold[rows] = 0

    def act_rows(self, rows: np.ndarray, obs: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        due = self._hold[rows] == 0
        self._hold[rows[~due]] -= 1
        if due.any():
            deciding = rows[due]
            dev = self.agent.device
            index = torch.as_tensor(deciding, device=dev)
            state = {k: v[index] for k, v in self.state.items()}
            obs_t = torch.as_tensor(np.asarray(obs, np.float32)[due], device=dev)
            first = torch.zeros(len(index), dtype=torch.bool, device=dev)
            action, state = self.agent.policy_step(
                obs_t, self.prev_action[index], state, first, self.deterministic, self.generator
            )
            for k, v in state.items():
                self.state[k][index] = v
            self.prev_action[index] = action
            self._held[deciding] = action.cpu().numpy().astype(np.float64)
            self._hold[deciding] = self.action_repeat - 1
        return self._held[rows].copy()
