"""Replay the recorded reference vectors on a game and measure agreement.

`python -m agent.game.conformance [vectors.npz] [--game bundled|reference]` prints,
per criterion of the recorded vectors (docs/game.md, "The conformance check"), the
achieved share and the largest error (`--game reference` checks the harness itself where the reference is installed).
The tests in tests/test_game_conformance.py assert the same criteria.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.game import GAMES, load_game

DEFAULT_VECTORS = Path(__file__).resolve().parents[2] / "tests" / "data" / "vectors.npz"
OBS_TOL = 1e-5
RESET_TOL = 1e-9
VALUE_TOL = 1e-6
OPPONENT_TOL = 1e-9
EARLY_STEPS = 10


@dataclass
class EpisodeResult:
    """How one replayed episode compares with its recording."""

    name: str
    mode: int
    keep_mode: bool
    reset_err: float
    early_err: float
    obs_err: float
    obs2_err: float
    same_outcome: bool
    first_bad_step: int | None
    value_err: dict[str, float] = field(default_factory=dict)

    @property
    def obs_ok(self) -> bool:
        return self.obs_err <= OBS_TOL and self.obs2_err <= OBS_TOL


def _max(a: np.ndarray) -> float:
    return float(np.max(a)) if a.size else 0.0


def replay(path: Path | str = DEFAULT_VECTORS, game: str = "bundled") -> list[EpisodeResult]:
    """Replay every episode; episodes with the same (mode, keep_mode) share one game object."""
    env_class = load_game(game).HockeyEnv
    data = np.load(path, allow_pickle=False)
    games: dict[tuple[int, bool], Any] = {}
    results = []
    for i in range(int(data["n_episodes"])):
        key = f"ep{i:03d}"
        mode = int(data[f"{key}/mode"])
        keep = bool(data[f"{key}/keep_mode"])
        if (mode, keep) not in games:
            games[(mode, keep)] = env_class(mode=mode, keep_mode=keep)
        env = games[(mode, keep)]
        one = int(data[f"{key}/one_starting"])
        actions = data[f"{key}/actions"]
        fields = ("obs", "obs2", "reward", "reward2", "terminated", "info", "info2")
        rec = {name: data[f"{key}/{name}"] for name in fields}

        obs, _ = env.reset(one_starting=None if one == -1 else bool(one), seed=int(data[f"{key}/seed"]))
        obs_list, obs2_list = [obs], [env.obs_agent_two()]
        rewards, rewards2, terms, infos, infos2 = [], [], [], [], []
        for action in actions:
            obs, reward, done, _, info = env.step(action)
            info2 = env.get_info_agent_two()
            obs_list.append(obs)
            obs2_list.append(env.obs_agent_two())
            rewards.append(reward)
            rewards2.append(env.get_reward_agent_two(info2))
            terms.append(done)
            order = ("winner", "reward_closeness_to_puck", "reward_touch_puck", "reward_puck_direction")
            infos.append([info[k] for k in order])
            infos2.append([info2[k] for k in order])

        obs_err = np.max(np.abs(np.array(obs_list) - rec["obs"]), axis=1)
        obs2_err = np.max(np.abs(np.array(obs2_list) - rec["obs2"]), axis=1)
        step_err = np.maximum(obs_err, obs2_err)
        bad = np.flatnonzero(step_err > OBS_TOL)
        # A step's values are compared where the observation after it agrees.
        agree = step_err[1:] <= OBS_TOL
        value_err = {
            "reward": _max(np.abs(np.array(rewards) - rec["reward"])[agree]),
            "reward2": _max(np.abs(np.array(rewards2) - rec["reward2"])[agree]),
            "terminated": _max((np.array(terms) != rec["terminated"])[agree].astype(float)),
            "info": _max(np.abs(np.array(infos) - rec["info"])[agree]),
            "info2": _max(np.abs(np.array(infos2) - rec["info2"])[agree]),
        }
        # Episode length is where the recording stopped: its last step is the first done.
        rec_done = np.flatnonzero(rec["terminated"])
        own_done = np.flatnonzero(terms)
        same_outcome = (
            len(rec_done) > 0
            and len(own_done) > 0
            and rec_done[0] == own_done[0]
            and infos[own_done[0]][0] == rec["info"][rec_done[0]][0]
        ) or (len(rec_done) == 0 and len(own_done) == 0)
        results.append(
            EpisodeResult(
                name=key,
                mode=mode,
                keep_mode=keep,
                reset_err=max(float(obs_err[0]), float(obs2_err[0])),
                early_err=float(np.max(step_err[: EARLY_STEPS + 1])),
                obs_err=float(np.max(obs_err)),
                obs2_err=float(np.max(obs2_err)),
                same_outcome=bool(same_outcome),
                first_bad_step=int(bad[0]) if bad.size else None,
                value_err=value_err,
            )
        )
    return results


def opponent_errors(path: Path | str = DEFAULT_VECTORS, game: str = "bundled") -> np.ndarray:
    """Per recorded decision, the largest error of `BasicOpponent.act` at the recorded phase.

    The phase is set so that after act()'s random increment (peeked from numpy's
    global generator, then restored) it is the recorded one.
    """
    opponent_class = load_game(game).BasicOpponent
    data = np.load(path, allow_pickle=False)
    obs, phase, weak, action = (data[f"opponent/{k}"] for k in ("obs", "phase", "weak", "action"))
    keep = action.shape[1] == 4
    players = {w: opponent_class(weak=w, keep_mode=keep) for w in (True, False)}
    errors = np.empty(len(obs))
    for i, (o, p, w) in enumerate(zip(obs, phase, weak)):
        player = players[bool(w)]
        state = np.random.get_state()
        increment = np.random.uniform(0, 0.2)
        np.random.set_state(state)
        player.phase = p - increment
        errors[i] = np.max(np.abs(np.asarray(player.act(o), dtype=np.float64) - action[i]))
    return errors


def _row(name: str, required: str, passed: list[bool], errors: list[float]) -> tuple[str, str, float, float]:
    return name, required, float(np.mean(passed)), max(errors) if errors else float("nan")


def summary(results: list[EpisodeResult], opp_err: np.ndarray) -> list[tuple[str, str, float, float]]:
    """Rows (criterion, required share, achieved share, max error) for the table."""
    reset = [r.reset_err for r in results]
    early = [r.early_err for r in results]
    whole = [max(r.obs_err, r.obs2_err) for r in results]
    rows = [
        _row("reset obs within 1e-9", "100%", [e <= RESET_TOL for e in reset], reset),
        _row("first 10 steps within 1e-5", "100%", [e <= OBS_TOL for e in early], early),
        _row("winner and length identical", ">=95%", [r.same_outcome for r in results], []),
        _row("all obs and obs2 within 1e-5", ">=90%", [r.obs_ok for r in results], whole),
    ]
    for name in ("reward", "reward2", "terminated", "info", "info2"):
        errs = [r.value_err[name] for r in results]
        rows.append(_row(f"{name} within 1e-6 where obs agree", "100%", [e <= VALUE_TOL for e in errs], errs))
    opp = opp_err.tolist()
    rows.append(_row("opponent actions within 1e-9", "100%", [e <= OPPONENT_TOL for e in opp], opp))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the conformance table; exit status 1 when a criterion is missed."""
    parser = argparse.ArgumentParser(prog="python -m agent.game.conformance", description=__doc__.splitlines()[0])
    parser.add_argument("vectors", nargs="?", type=Path, default=DEFAULT_VECTORS)
    parser.add_argument("--game", choices=GAMES, default="bundled")
    args = parser.parse_args(argv)
    if not args.vectors.exists():
        parser.error(f"vectors file not found: {args.vectors}")
    try:
        results = replay(args.vectors, args.game)
    except ImportError as exc:
        parser.error(str(exc))
    rows = summary(results, opponent_errors(args.vectors, args.game))
    print(f"{'criterion':40s} {'required':>8s} {'achieved':>9s} {'max error':>10s}")
    failed = False
    for name, required, share, err in rows:
        need = float(required.strip(">=%")) / 100
        failed |= share < need
        shown = "-" if np.isnan(err) else f"{err:.2e}"
        print(f"{name:40s} {required:>8s} {share:9.1%} {shown:>10s}")
    drift = [f"{r.name}@{r.first_bad_step}" for r in results if r.first_bad_step is not None]
    print(f"episodes drifting apart (first step beyond 1e-5): {', '.join(drift) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
