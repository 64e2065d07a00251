"""Pygame drawing of the hockey table; works headless for 'rgb_array' (SDL_VIDEODRIVER=dummy).

Imported only when a game is rendered, so the game itself does not need pygame.
"""

from __future__ import annotations

import os
from typing import Any

import Box2D
import numpy as np

_COLORS = {
    "decoration": (200, 200, 235),
    "wall": (0, 0, 0),
    "goal1": (235, 98, 53),
    "goal2": (93, 158, 199),
    "player1": (235, 98, 53),
    "player2": (93, 158, 199),
    "puck": (0, 0, 0),
}
_BACKGROUND = (255, 255, 255)


class Renderer:
    """Draws Box2D bodies to a surface; opens a window only for 'human' mode."""

    def __init__(self, width: int, height: int, scale: float) -> None:
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame

        self._pygame = pygame
        self.width, self.height, self.scale = width, height, scale
        self.surface = pygame.Surface((width, height))
        self.screen: Any = None
        self.clock: Any = None

    def _to_px(self, point: Any) -> tuple[float, float]:
        return point[0] * self.scale, self.height - point[1] * self.scale

    def _draw_bodies(self, bodies: list[Any]) -> None:
        pygame = self._pygame
        self.surface.fill(_BACKGROUND)
        for body in bodies:
            color = _COLORS.get(body.userData, (128, 128, 128))
            for fixture in body.fixtures:
                if fixture.sensor:
                    continue
                shape = fixture.shape
                # Decorations are outlines; everything that collides is filled.
                width = 2 if body.userData == "decoration" else 0
                if isinstance(shape, Box2D.b2CircleShape):
                    centre = self._to_px(body.transform * shape.pos)
                    pygame.draw.circle(self.surface, color, centre, shape.radius * self.scale, width)
                else:
                    points = [self._to_px(body.transform * v) for v in shape.vertices]
                    pygame.draw.polygon(self.surface, color, points, width)

    def draw(self, bodies: list[Any], mode: str, fps: int) -> np.ndarray | None:
        """Render the bodies; return an H x W x 3 uint8 image for 'rgb_array', else None."""
        self._draw_bodies(bodies)
        if mode == "rgb_array":
            return np.transpose(self._pygame.surfarray.array3d(self.surface), (1, 0, 2)).astype(np.uint8)
        pygame = self._pygame
        if self.screen is None:
            pygame.display.init()
            pygame.display.set_caption("hockey")
            self.screen = pygame.display.set_mode((self.width, self.height))
            self.clock = pygame.time.Clock()
        self.screen.blit(self.surface, (0, 0))
        pygame.event.pump()
        pygame.display.flip()
        self.clock.tick(fps)
        return None

    def close(self) -> None:
        """Close the window if one was opened."""
        if self.screen is not None:
            self._pygame.display.quit()
            self.screen = None
