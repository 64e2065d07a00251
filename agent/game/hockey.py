"""The two-player hockey game, written from the reference's facts (docs/game.md) to reproduce it exactly.

Conformance with the tournament server's game depends on details that look
incidental: the order bodies are created and destroyed in (Box2D hands out contact
proxies by order), the one Box2D world kept for the game's life, and where values are
rounded to float32 (the reference mixes numpy float32 arrays with Box2D's float32
vectors). Those details are kept on purpose; the hot path replaces numpy with plain
floats and explicit float32 rounding so that the same numbers come out faster.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import Box2D
import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding

from agent.game.rules import FPS, Mode, parse_mode

SCALE = 60.0
VIEWPORT_W = 600
VIEWPORT_H = 480
W = VIEWPORT_W / SCALE
H = VIEWPORT_H / SCALE
CENTER_X = W / 2
CENTER_Y = H / 2
ZONE = W / 20
MAX_ANGLE = math.pi / 3
MAX_TIME_KEEP_PUCK = 15
GOAL_SIZE = 75
FORCEMULTIPLIER = 6000
SHOOTFORCEMULTIPLIER = 60
TORQUEMULTIPLIER = 400
MAX_PUCK_SPEED = 25
MAX_PLAYER_SPEED = 10
RACKET_FACTOR = 1.2
RACKET_POLY = [(-10, 20), (5, 20), (5, -20), (-10, -20), (-18, -10), (-21, 0), (-18, 10)]
VELOCITY_ITERATIONS = 6 * 30
POSITION_ITERATIONS = 2 * 30

_DT = 1.0 / FPS
_LEFT_LIMIT = W / 2 - 210 / SCALE
_RIGHT_LIMIT = W / 2 + 210 / SCALE
_TOP_LIMIT = H - 1.2
_BOTTOM_LIMIT = 1.2
_CLOSENESS_MAX_DIST = 250.0 / SCALE
_CLOSENESS_MAX_REWARD = -30.0

_F32x2 = struct.Struct("2f")
_F32x6 = struct.Struct("6f")
_F32_BY_LEN = {n: struct.Struct(f"{n}f") for n in (6, 8)}


# Fixture definitions are built once and shared: Box2D copies them into every body,
# and building fresh ones at every reset leaks memory in the Box2D bindings (~4 KB
# a reset).
def _poly(points: list[tuple[float, float]]) -> Box2D.b2PolygonShape:
    """A polygon given in pixels."""
    return Box2D.b2PolygonShape(vertices=[(x / SCALE, y / SCALE) for x, y in points])


def _table_layout() -> list[tuple[str, tuple[float, float], list[Box2D.b2FixtureDef]]]:
    """(tag, position, fixtures) of the static table bodies, in creation order.

    The five decorations collide with nothing; they exist because their broad-phase
    proxies count in the order Box2D pairs contacts in.
    """

    def deco(shape: Box2D.b2Shape) -> list[Box2D.b2FixtureDef]:
        return [Box2D.b2FixtureDef(shape=shape, categoryBits=0, maskBits=0)]

    def wall(points: list[tuple[float, float]]) -> list[Box2D.b2FixtureDef]:
        shape = _poly(points)
        return [Box2D.b2FixtureDef(shape=shape, density=0, friction=0.1, categoryBits=0x011, maskBits=0x0011)]

    edge = [(-250, 10), (-250, -10), (250, -10), (250, 10)]
    top = (H - 1) / 2 * SCALE - GOAL_SIZE
    post = [(-10, top), (10, top - 7), (10, -5), (-10, -5)]

    def circle(radius_px: float) -> Box2D.b2CircleShape:
        return Box2D.b2CircleShape(radius=radius_px / SCALE, pos=(0, 0))

    box = [(0, 100), (100, 100), (100, -100), (0, -100)]
    return [
        ("decoration", (W / 2, H / 2), deco(circle(100))),
        ("decoration", (W / 2 - 250 / SCALE, H / 2), deco(circle(GOAL_SIZE))),
        ("decoration", (W / 2 - 240 / SCALE, H / 2), deco(_poly(box))),
        ("decoration", (W / 2 + 250 / SCALE, H / 2), deco(circle(GOAL_SIZE))),
        ("decoration", (W / 2 + 140 / SCALE, H / 2), deco(_poly([(100, 100), (0, 100), (0, -100), (100, -100)]))),
        ("wall", (W / 2, H - 0.5), wall(edge)),
        ("wall", (W / 2, 0.5), wall(edge)),
        ("wall", (W / 2 - 245 / SCALE, H - 0.5), wall([(x, -y) for x, y in post])),
        ("wall", (W / 2 - 245 / SCALE, 0.5), wall(post)),
        ("wall", (W / 2 + 245 / SCALE, H - 0.5), wall([(-x, -y) for x, y in post])),
        ("wall", (W / 2 + 245 / SCALE, 0.5), wall([(-x, y) for x, y in post])),
    ]


def _goal_fixtures() -> list[Box2D.b2FixtureDef]:
    """A goal: a sensor that sees the puck, then a solid part that stops the players."""
    points = [(-10, GOAL_SIZE), (10, GOAL_SIZE), (10, -GOAL_SIZE), (-10, -GOAL_SIZE)]
    common = {"density": 0, "friction": 0.1}
    return [
        Box2D.b2FixtureDef(shape=_poly(points), categoryBits=0x0010, maskBits=0x001, isSensor=True, **common),
        Box2D.b2FixtureDef(shape=_poly(points), categoryBits=0x010, maskBits=0x0010, **common),
    ]


def _player_fixture(is_player_two: bool) -> Box2D.b2FixtureDef:
    """The racket; player 2's is mirrored in x."""
    sign = -1.0 if is_player_two else 1.0
    vertices = [(sign * x / SCALE * RACKET_FACTOR, y / SCALE * RACKET_FACTOR) for x, y in RACKET_POLY]
    return Box2D.b2FixtureDef(
        shape=Box2D.b2PolygonShape(vertices=vertices),
        density=200.0 / RACKET_FACTOR,
        friction=1.0,
        categoryBits=0x0010,
        maskBits=0x011,
        restitution=0.0,
    )


_TABLE = _table_layout()
_GOAL_FIXTURES = _goal_fixtures()
_PLAYER_FIXTURES = {False: _player_fixture(False), True: _player_fixture(True)}
_PUCK_FIXTURE = Box2D.b2FixtureDef(
    shape=Box2D.b2CircleShape(radius=13 / SCALE, pos=(0, 0)),
    density=7.0,
    friction=0.1,
    categoryBits=0x001,
    maskBits=0x0010,
    restitution=0.95,
)


class _ContactListener(Box2D.b2ContactListener):
    """Decides goals and puck catches at the start of a contact, like the reference."""

    def __init__(self, env: HockeyEnv) -> None:
        super().__init__()
        self.env = env

    def BeginContact(self, contact: Box2D.b2Contact) -> None:  # noqa: N802 (Box2D's name)
        env = self.env
        body_a = contact.fixtureA.body
        body_b = contact.fixtureB.body
        tags = (body_a.userData, body_b.userData)
        if "puck" not in tags:
            return
        if "goal2" in tags:
            env.done = True
            env.winner = 1
        elif "goal1" in tags:
            env.done = True
            env.winner = -1
        elif not env.keep_mode:
            return
        elif "player1" in tags:
            if env.puck.linearVelocity[0] < 0.1 and env.player1_has_puck == 0:
                env.player1_has_puck = MAX_TIME_KEEP_PUCK
        elif "player2" in tags:
            if env.puck.linearVelocity[0] > -0.1 and env.player2_has_puck == 0:
                env.player2_has_puck = MAX_TIME_KEEP_PUCK


class HockeyEnv(gym.Env):
    """Two-player air hockey on a Box2D table; player 1 plays from the left.

    `step` takes the joint action of both players (4 values each with keep mode:
    x force, y force, torque, shoot; 3 without) and returns player 1's observation
    and reward. Player 2's view is `obs_agent_two()`, `get_info_agent_two()` and
    `get_reward_agent_two(info2)`.
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": FPS}

    def __init__(self, mode: Mode | int | str = Mode.NORMAL, keep_mode: bool = True) -> None:
        self.mode = parse_mode(mode)
        self.keep_mode = bool(keep_mode)
        self._n_obs = 18 if self.keep_mode else 16
        self._n_act = 8 if self.keep_mode else 6
        self._pack_action = _F32_BY_LEN[self._n_act]
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(self._n_obs,), dtype=np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self._n_act,), dtype=np.float32)

        self.world = Box2D.b2World(gravity=(0, 0))
        self._listener = _ContactListener(self)
        self.world.contactListener = self._listener
        self.player1: Box2D.b2Body | None = None
        self.player2: Box2D.b2Body | None = None
        self.puck: Box2D.b2Body | None = None
        self.goal_player_1: Box2D.b2Body | None = None
        self.goal_player_2: Box2D.b2Body | None = None
        self.world_objects: list[Box2D.b2Body] = []
        self._renderer: Any = None

        self.player1_has_puck = 0
        self.player2_has_puck = 0
        self.one_starts = True
        self.max_timesteps = 250
        self.done = False
        self.winner = 0
        self.time = 0
        self.timeStep = _DT
        self.reset(one_starting=True)

    # ------------------------------------------------------------------ bodies
    def _destroy(self) -> None:
        """Destroy the previous round's bodies in the reference's order (docs/game.md)."""
        if self.player1 is None:
            return
        for body in (self.player1, self.player2, self.puck, self.goal_player_1, self.goal_player_2):
            self.world.DestroyBody(body)
        for body in self.world_objects:
            self.world.DestroyBody(body)
        self.world_objects = []
        self.player1 = self.player2 = self.puck = None
        self.goal_player_1 = self.goal_player_2 = None

    def _static(self, position: tuple[float, float], fixtures: list[Box2D.b2FixtureDef], tag: str) -> Box2D.b2Body:
        body = self.world.CreateStaticBody(position=position, angle=0.0, fixtures=fixtures)
        body.userData = tag
        return body

    def _create_player(self, position: tuple[float, float], is_player_two: bool) -> Box2D.b2Body:
        body = self.world.CreateDynamicBody(position=position, angle=0.0, fixtures=_PLAYER_FIXTURES[is_player_two])
        body.userData = "player2" if is_player_two else "player1"
        return body

    def _create_puck(self, position: tuple[float, float]) -> Box2D.b2Body:
        body = self.world.CreateDynamicBody(position=position, angle=0.0, fixtures=_PUCK_FIXTURE)
        body.linearDamping = 0.05
        body.userData = "puck"
        return body

    def _uniform(self, low: float, high: float) -> float:
        return self._np_random.uniform(low, high, 1)[0]

    # ------------------------------------------------------------------ reset
    def reset(
        self,
        one_starting: bool | None = None,
        mode: Mode | int | str | None = None,
        seed: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new round; `options` may carry 'one_starting' and 'mode' for gymnasium wrappers."""
        if options:
            unknown = set(options) - {"one_starting", "mode"}
            if unknown:
                raise ValueError(f"unknown reset options {sorted(unknown)}; choices: 'one_starting', 'mode'")
            one_starting = options.get("one_starting", one_starting)
            mode = options.get("mode", mode)
        if mode is not None:
            self.mode = parse_mode(mode)
        self._destroy()
        self._np_random, _ = seeding.np_random(seed)
        self.done = False
        self.winner = 0
        self.time = 0
        if self.mode == Mode.NORMAL:
            self.max_timesteps = 250
            self.one_starts = bool(one_starting) if one_starting is not None else not self.one_starts
        else:
            self.max_timesteps = 80
        self._closeness_factor = _CLOSENESS_MAX_REWARD / (_CLOSENESS_MAX_DIST * self.max_timesteps / 2)
        self._direction_factor = 1 / (self.max_timesteps * MAX_PUCK_SPEED)

        self.world_objects = [self._static(position, fixtures, tag) for tag, position, fixtures in _TABLE]
        self.goal_player_1 = self._static((W / 2 - 255 / SCALE, H / 2), _GOAL_FIXTURES, "goal1")
        self.goal_player_2 = self._static((W / 2 + 255 / SCALE, H / 2), _GOAL_FIXTURES, "goal2")
        self.player1 = self._create_player((W / 5, H / 2), False)
        if self.mode == Mode.NORMAL:
            self.player2 = self._create_player((4 * W / 5, H / 2), True)
        else:
            x2 = 4 * W / 5 + self._uniform(-W / 3, W / 6)
            self.player2 = self._create_player((x2, H / 2 + self._uniform(-H / 4, H / 4)), True)

        if self.mode == Mode.TRAIN_DEFENSE:
            x = W / 2 + self._uniform(0, W / 3)
            self.puck = self._create_puck((x, H / 2 + 0.8 * self._uniform(-H / 2, H / 2)))
            target_y = H / 2 + 0.6 * self._uniform(-GOAL_SIZE / SCALE, GOAL_SIZE / SCALE)
            direction = self.puck.position - (0, target_y)
            direction = direction / direction.length
            force = -direction * SHOOTFORCEMULTIPLIER * self.puck.mass / self.timeStep
            self.puck.ApplyForceToCenter(force, True)
        elif self.one_starts or self.mode == Mode.TRAIN_SHOOTING:
            x = W / 2 - self._uniform(H / 8, H / 4)
            self.puck = self._create_puck((x, H / 2 + self._uniform(-H / 8, H / 8)))
        else:
            x = W / 2 + self._uniform(H / 8, H / 4)
            self.puck = self._create_puck((x, H / 2 + self._uniform(-H / 8, H / 8)))

        self._mass1 = self.player1.mass
        self._mass2 = self.player2.mass
        return self._get_obs(), self._get_info()

    # ------------------------------------------------------------------ step
    def _clean_action(self, action: Any) -> list[float]:
        """Validate, clip to [-1, 1] and round to float32, as plain floats."""
        if isinstance(action, np.ndarray):
            if action.ndim != 1:
                raise ValueError(f"action must be a flat vector of {self._n_act} values, got shape {action.shape}")
            values = action.tolist()
        else:
            try:
                values = list(action)
            except TypeError as exc:
                raise ValueError(f"action must be a sequence of {self._n_act} numbers, got {action!r}") from exc
        if len(values) != self._n_act:
            raise ValueError(
                f"action must have {self._n_act} values (both players"
                f"{', keep mode' if self.keep_mode else ', no keep mode'}), got {len(values)}"
            )
        clipped = []
        for i, value in enumerate(values):
            try:
                value = float(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"action value {i} is not a number: {value!r}") from exc
            if not -math.inf < value < math.inf:
                raise ValueError(f"action value {i} is {value}; actions must be finite")
            clipped.append(-1.0 if value < -1.0 else (1.0 if value > 1.0 else value))
        pack = self._pack_action
        return list(pack.unpack(pack.pack(*clipped)))

    @staticmethod
    def _check_boundaries(
        body: Box2D.b2Body, one: bool, x: float, y: float, fx: float, fy: float
    ) -> tuple[float, float]:
        """Stop a player at the table's limits: zero the offending velocity and force component."""
        if (
            (one and x < _LEFT_LIMIT and fx < 0)
            or (not one and x > _RIGHT_LIMIT and fx > 0)
            or (one and x > CENTER_X and fx > 0)
            or (not one and x < CENTER_X and fx < 0)
        ):
            vel = body.linearVelocity
            vel[0] = 0
            body.linearVelocity = vel
            fx = 0.0
        if (y > _TOP_LIMIT and fy > 0) or (y < _BOTTOM_LIMIT and fy < 0):
            vel = body.linearVelocity
            vel[1] = 0
            body.linearVelocity = vel
            fy = 0.0
        return fx, fy

    def _translate(self, body: Box2D.b2Body, mass: float, one: bool, ax: float, ay: float) -> None:
        """Apply a player's x/y force with the reference's speed limit and centre-line bounce."""
        vel = body.linearVelocity
        vx, vy = vel.x, vel.y
        pos = body.position
        x, y = pos.x, pos.y
        if one:
            fx, fy = ax * FORCEMULTIPLIER, ay * FORCEMULTIPLIER
        else:
            fx, fy = -ax * FORCEMULTIPLIER, -ay * FORCEMULTIPLIER
        # a * 6000 is exact in double (a 24-bit significand times a 9-bit constant), so
        # rounding it to float32 like the reference's float32 array happens where Box2D
        # takes the force, and explicitly below where a value feeds more arithmetic.
        if (one and x > CENTER_X - ZONE) or (not one and x < CENTER_X + ZONE):
            # numpy semantics of `force[0] = ...; force[0] += ...` on a float32 array
            # (NEP 50: the Python float is rounded to float32 before the float32 add).
            first = np.float32(0)
            if one:
                if vx > 0:
                    first = np.float32(-2 * vx * mass / _DT)
                second = -1 * (x - CENTER_X) * vx * mass / _DT
            else:
                if vx < 0:
                    first = np.float32(-2 * vx * mass / _DT)
                second = 1 * (x - CENTER_X) * vx * mass / _DT
            fx = float(first + np.float32(second))
            body.linearDamping = 20.0
            body.ApplyForceToCenter(self._check_boundaries(body, one, x, y, fx, fy), True)
            return
        speed = math.sqrt(vx * vx + vy * vy)
        if speed < MAX_PLAYER_SPEED:
            body.linearDamping = 5.0
            body.ApplyForceToCenter(self._check_boundaries(body, one, x, y, fx, fy), True)
            return
        # Above the speed limit a push is applied only if it slows the player down.
        body.linearDamping = 20.0
        force = np.array([fx, fy], dtype=np.float32)
        delta = _DT * force / mass
        new_speed = float(np.sqrt(np.sum((np.array([vx, vy]) + delta) ** 2)))
        if new_speed < speed:
            body.ApplyForceToCenter(self._check_boundaries(body, one, x, y, fx, fy), True)

    @staticmethod
    def _rotate(body: Box2D.b2Body, mass: float, a: float) -> None:
        """Apply a player's torque; beyond MAX_ANGLE a restoring torque replaces it."""
        torque = a * TORQUEMULTIPLIER
        angle = body.angle
        if abs(angle) > MAX_ANGLE:
            torque = 0.0
            w = body.angularVelocity
            if angle * w > 0:
                torque = -0.1 * w * mass / _DT
            torque += -0.1 * angle * mass / _DT
            body.angularDamping = 10.0
        else:
            body.angularDamping = 2.0
        body.ApplyTorque(torque, True)

    def _shoot(self, player: Box2D.b2Body, is_player_one: bool) -> None:
        """Push the puck along the racket's direction (Box2D float32 vector arithmetic)."""
        sign = 1.0 if is_player_one else -1.0
        direction = Box2D.b2Vec2(math.cos(player.angle) * sign, math.sin(player.angle) * sign)
        self.puck.ApplyForceToCenter(direction * self.puck.mass / self.timeStep * SHOOTFORCEMULTIPLIER, True)

    def _keep_puck(self, player: Box2D.b2Body) -> None:
        self.puck.position = player.position
        self.puck.linearVelocity = player.linearVelocity

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance one frame with the joint action; returns (obs, reward, done, False, info)."""
        act = self._clean_action(action)
        self._translate(self.player1, self._mass1, True, act[0], act[1])
        self._rotate(self.player1, self._mass1, act[2])
        o = 4 if self.keep_mode else 3
        self._translate(self.player2, self._mass2, False, act[o], act[o + 1])
        self._rotate(self.player2, self._mass2, act[o + 2])

        puck = self.puck
        pv = puck.linearVelocity
        puck.linearDamping = 10.0 if math.sqrt(pv.x * pv.x + pv.y * pv.y) > MAX_PUCK_SPEED else 0.05

        if self.keep_mode:
            if self.player1_has_puck > 1:
                self._keep_puck(self.player1)
                self.player1_has_puck -= 1
                if self.player1_has_puck == 1 or act[3] > 0.5:
                    self._shoot(self.player1, True)
                    self.player1_has_puck = 0
            if self.player2_has_puck > 1:
                self._keep_puck(self.player2)
                self.player2_has_puck -= 1
                if self.player2_has_puck == 1 or act[7] > 0.5:
                    self._shoot(self.player2, False)
                    self.player2_has_puck = 0

        self.world.Step(self.timeStep, VELOCITY_ITERATIONS, POSITION_ITERATIONS)
        obs = self._get_obs()
        if self.time >= self.max_timesteps:
            self.done = True
        info = self._get_info()
        reward = self.get_reward(info)
        self.time += 1
        return obs, reward, self.done, False, info

    # ------------------------------------------------------------------ views
    def _state_values(self) -> list[float]:
        """The 16 or 18 observation values of player 1 as Python floats."""
        p1, p2, puck = self.player1, self.player2, self.puck
        a, b, c = p1.position, p2.position, puck.position
        # Box2D's b2Vec2 subtraction: each difference rounded to float32.
        rel = _F32x6.unpack(
            _F32x6.pack(a.x - CENTER_X, a.y - CENTER_Y, b.x - CENTER_X, b.y - CENTER_Y, c.x - CENTER_X, c.y - CENTER_Y)
        )
        v1, v2, vp = p1.linearVelocity, p2.linearVelocity, puck.linearVelocity
        values = [
            rel[0], rel[1], p1.angle, v1.x, v1.y, p1.angularVelocity,
            rel[2], rel[3], p2.angle, v2.x, v2.y, p2.angularVelocity,
            rel[4], rel[5], vp.x, vp.y,
        ]  # fmt: skip
        if self.keep_mode:
            values += [self.player1_has_puck, self.player2_has_puck]
        return values

    def _get_obs(self) -> np.ndarray:
        return np.array(self._state_values(), dtype=np.float64)

    def obs_agent_two(self) -> np.ndarray:
        """Player 2's observation, mirrored so that a player-1 policy can play it."""
        s = self._state_values()
        values = [
            -s[6], -s[7], s[8], -s[9], -s[10], s[11],
            -s[0], -s[1], s[2], -s[3], -s[4], s[5],
            -s[12], -s[13], -s[14], -s[15],
        ]  # fmt: skip
        if self.keep_mode:
            values += [s[17], s[16]]
        return np.array(values, dtype=np.float64)

    def _closeness(self, player: Box2D.b2Body) -> float:
        a, b = player.position, self.puck.position
        dx, dy = _F32x2.unpack(_F32x2.pack(a.x - b.x, a.y - b.y))
        return math.sqrt(dx * dx + dy * dy) * self._closeness_factor

    def _sparse_reward(self) -> float:
        if not self.done or self.winner == 0:
            return 0
        return 10 if self.winner == 1 else -10

    def _get_info(self) -> dict[str, Any]:
        puck = self.puck
        vx = puck.linearVelocity.x
        closeness = 0.0
        if puck.position.x < CENTER_X and vx <= 0:
            closeness = self._closeness(self.player1)
        return {
            "winner": self.winner,
            "reward_closeness_to_puck": closeness,
            "reward_touch_puck": float(self.player1_has_puck == MAX_TIME_KEEP_PUCK),
            "reward_puck_direction": vx * self._direction_factor,
        }

    def get_info_agent_two(self) -> dict[str, Any]:
        """Player 2's info: the mirror of player 1's."""
        puck = self.puck
        vx = puck.linearVelocity.x
        closeness = 0.0
        if puck.position.x > CENTER_X and vx >= 0:
            closeness = self._closeness(self.player2)
        return {
            "winner": -self.winner,
            "reward_closeness_to_puck": closeness,
            "reward_touch_puck": float(self.player2_has_puck == MAX_TIME_KEEP_PUCK),
            "reward_puck_direction": -vx / (self.max_timesteps * MAX_PUCK_SPEED),
        }

    def get_reward(self, info: dict[str, Any]) -> float:
        """Player 1's reward: +-10 when a goal ends the round, plus closeness to the puck."""
        return float(self._sparse_reward() + info["reward_closeness_to_puck"])

    def get_reward_agent_two(self, info_two: dict[str, Any]) -> float:
        """Player 2's reward from `get_info_agent_two()`."""
        return float(-self._sparse_reward() + info_two["reward_closeness_to_puck"])

    # ------------------------------------------------------------------ helpers
    def set_state(self, state: np.ndarray | list[float]) -> None:
        """Place bodies from a player-1 observation (and the keep counters when present)."""
        s = np.asarray(state, dtype=np.float64)
        if s.shape not in ((16,), (18,)):
            raise ValueError(f"state must be an observation of 16 or 18 values, got shape {s.shape}")
        if not np.all(np.isfinite(s)):
            raise ValueError("state contains NaN or infinite values")
        v = s.tolist()
        for body, k in ((self.player1, 0), (self.player2, 6)):
            body.position = (v[k] + CENTER_X, v[k + 1] + CENTER_Y)
            body.angle = v[k + 2]
            body.linearVelocity = (v[k + 3], v[k + 4])
            body.angularVelocity = v[k + 5]
        self.puck.position = (v[12] + CENTER_X, v[13] + CENTER_Y)
        self.puck.linearVelocity = (v[14], v[15])
        if len(v) == 18 and self.keep_mode:
            self.player1_has_puck = int(v[16])
            self.player2_has_puck = int(v[17])

    def discrete_to_continous_action(self, discrete_action: int) -> np.ndarray:
        """One player's continuous action for a discrete one (0 nothing, 1-6 axes, 7 shoot)."""
        choices = 8 if self.keep_mode else 7
        is_int = isinstance(discrete_action, (int, np.integer))
        if not is_int or isinstance(discrete_action, (bool, np.bool_)):
            raise ValueError(f"discrete action must be an integer in 0..{choices - 1}, got {discrete_action!r}")
        if not 0 <= discrete_action < choices:
            raise ValueError(f"discrete action must be in 0..{choices - 1}, got {discrete_action}")
        a = int(discrete_action)
        values = [
            (a == 1) * -1.0 + (a == 2) * 1.0,
            (a == 3) * -1.0 + (a == 4) * 1.0,
            (a == 5) * -1.0 + (a == 6) * 1.0,
        ]
        if self.keep_mode:
            values.append(float(a == 7))
        return np.array(values, dtype=np.float64)

    def render(self, mode: str = "human") -> np.ndarray | None:
        """Draw the table: 'human' opens a window, 'rgb_array' returns a 480 x 600 x 3 image."""
        if mode not in self.metadata["render_modes"]:
            raise ValueError(f"unknown render mode {mode!r}; choices: 'human', 'rgb_array'")
        from agent.game.render import Renderer

        if self._renderer is None:
            self._renderer = Renderer(VIEWPORT_W, VIEWPORT_H, SCALE)
        bodies = [*self.world_objects, self.goal_player_1, self.goal_player_2]
        bodies += [self.player1, self.player2, self.puck]
        return self._renderer.draw(bodies, mode, FPS)

    def close(self) -> None:
        """Close the render window, if any."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
