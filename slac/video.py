"""Videos of evaluation episodes: observation | model reconstruction | overview camera, per step.

Each frame (H = overview height, W = 3 H, plus a header strip) shows, for agent step t:
- the observation x_t the agent's filter folded in (the perturbed one under an image attack),
  nearest-neighbour upscaled from 64×64 to H×H;
- the model's reconstruction of it, the decoder mean of p(x_t | z1_t, z2_t) at the filtered
  posterior latent z_t (the means under a deterministic policy, the draws under a stochastic one);
- the env's overview camera at the same moment (``env.unwrapped.render_overview``);
- a header with the step, the reward and cost of the action taken at t, the return and cost so far,
  red (and a red border) on steps whose action incurred cost.

:class:`EpisodeRecorder` is the ``on_step`` callback of :func:`slac.rollout.run_episode` that builds
the frames; :class:`Mp4Writer` streams them to an H.264 mp4 (imageio-ffmpeg; OpenCV's ``mp4v`` as the
fallback); :func:`tensorboard_video` lays frames out for ``SummaryWriter.add_video``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np
import torch

from slac.errors import InputError

HEADER = 32  # header strip height; 32 + H stays a multiple of 16 (H.264 macro blocks) for H = 64 k
RED = (220, 30, 30)
LABELS = ("observation", "reconstruction", "overview")


class OverviewTracker(gym.Wrapper):
    """Renders the overview camera after every reset and step, so a frame can show the scene at the
    same moment as the observation it pairs with (``run_episode``'s ``on_step`` runs after the step)."""

    def __init__(self, env: gym.Env, size: int = 256):
        super().__init__(env)
        self.size = size
        self.previous: np.ndarray | None = None  # the scene when the last observation was taken
        self.current: np.ndarray | None = None

    def reset(self, **kwargs):
        out = self.env.reset(**kwargs)
        self.previous, self.current = None, self.env.unwrapped.render_overview(self.size)
        return out

    def step(self, action):
        out = self.env.step(action)
        self.previous, self.current = self.current, self.env.unwrapped.render_overview(self.size)
        return out


def upscale(image_hwc: np.ndarray, height: int) -> np.ndarray:
    """Nearest-neighbour resize of an (h, w, 3) uint8 image to height ``height`` (pixels stay crisp)."""
    h, w = image_hwc.shape[:2]
    return cv2.resize(image_hwc, (round(w * height / h), height), interpolation=cv2.INTER_NEAREST)


def compose_frame(observation: np.ndarray, reconstruction: np.ndarray, overview: np.ndarray, *, step: int,
                  reward: float, cost: float, episode_return: float, cost_so_far: float) -> np.ndarray:
    """One video frame (HEADER + H, 3 H, 3) uint8 from (3, h, w) observation and reconstruction images
    and an (H, H, 3) overview frame."""
    height = overview.shape[0]
    panels = [upscale(np.ascontiguousarray(im.transpose(1, 2, 0)), height)
              for im in (observation, reconstruction)]
    body = np.concatenate([*panels, overview], axis=1)
    x = 0
    for label, panel in zip(LABELS, [*panels, overview], strict=True):
        width = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)[0][0]
        body[height - 18:height - 2, x + 2:x + 8 + width] //= 3  # a dark box under the label
        _text(body, label, (x + 5, height - 6), 0.4, (255, 255, 255))
        x += panel.shape[1]
    header = np.zeros((HEADER, body.shape[1], 3), np.uint8)
    if cost > 0:  # the red flash: header and a border around the panels
        header[:] = RED
        body[:3], body[-3:], body[:, :3], body[:, -3:] = RED, RED, RED, RED
    _text(header, f"step {step:4d}   reward {reward:+.2f}   return {episode_return:+.1f}   "
                  f"cost {cost:.0f}   cost so far {cost_so_far:.0f}", (8, 21), 0.5, (255, 255, 255))
    return np.concatenate([header, body], axis=0)


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float, color) -> None:
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


class EpisodeRecorder:
    """``on_step`` callback for :func:`slac.rollout.run_episode` that turns each step into a frame.

    ``env`` must be the :class:`OverviewTracker` the episode runs in; ``policy`` the ``LatentPolicy``
    (its ``attacked_image`` is what the filter saw under an image attack); ``sink`` receives each
    (HEADER + H, 3 H, 3) frame (e.g. ``Mp4Writer.append`` or ``list.append``).
    """

    def __init__(self, model, policy, env: OverviewTracker, sink: Callable[[np.ndarray], None]):
        self.model, self.policy, self.env, self.sink = model, policy, env, sink
        self.frames = 0
        self._return = self._cost = 0.0

    @torch.no_grad()
    def __call__(self, step: dict) -> None:
        state = step["policy_state"]  # the filter state after folding in step["obs"]
        recon = self.model.decode(state["z1"], state["z2"])[0].clamp(0, 1)  # (C, h, w): mean of p(x_t | z_t)
        recon = (recon * 255).round().to(torch.uint8).cpu().numpy()
        seen = self.policy.attacked_image if self.policy.attack is not None else None
        observation = seen if seen is not None else step["obs"]
        if step["step"] == 1:
            self._return = self._cost = 0.0
        self._return += step["reward"]
        self._cost += step["cost"]
        self.sink(compose_frame(observation, recon, self.env.previous, step=step["step"] - 1,
                                reward=step["reward"], cost=step["cost"], episode_return=self._return,
                                cost_so_far=self._cost))
        self.frames += 1


class Mp4Writer:
    """Streams frames to an mp4: H.264 through imageio-ffmpeg, else OpenCV's ``mp4v`` with a warning."""

    def __init__(self, path: str | Path, fps: float = 20.0):
        self.path = Path(path)
        self._writer = None
        self._cv2 = None
        self.codec = "h264"
        self.fps = fps
        try:
            import imageio_ffmpeg

            imageio_ffmpeg.get_ffmpeg_exe()
        except (ImportError, RuntimeError):
            self.codec = "mp4v"
            warnings.warn("ffmpeg not found (pip install imageio-ffmpeg); writing the video with OpenCV's "
                          "mp4v codec instead of H.264", stacklevel=2)

    def append(self, frame: np.ndarray) -> None:
        if self._writer is None and self._cv2 is None:
            self._open(frame.shape)
        if self._writer is not None:
            self._writer.append_data(frame)
        else:
            self._cv2.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def _open(self, shape: tuple[int, ...]) -> None:
        if self.codec == "h264":
            import imageio.v2 as imageio

            self._writer = imageio.get_writer(
                self.path, format="FFMPEG", mode="I", fps=self.fps, codec="libx264", pixelformat="yuv420p",
                quality=8, macro_block_size=16, ffmpeg_log_level="error")
        else:
            self._cv2 = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                        (shape[1], shape[0]))
            if not self._cv2.isOpened():
                raise InputError(f"cannot write video {str(self.path)!r}: neither ffmpeg nor OpenCV's mp4 "
                                 "writer works here; install ffmpeg with: pip install imageio-ffmpeg")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._cv2 is not None:
            self._cv2.release()
        self._writer = self._cv2 = None

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def tensorboard_video(frames: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 -> (1, T, 3, H, W), the layout ``SummaryWriter.add_video`` takes
    (which itself needs the ``moviepy`` package to encode; :func:`add_video` does not)."""
    return np.ascontiguousarray(np.stack(list(frames))[None].transpose(0, 1, 4, 2, 3))


def add_video(writer, tag: str, frames: np.ndarray, step: int, fps: float = 20.0, scale: float = 0.5) -> None:
    """Write frames (T, H, W, 3) uint8 to a ``SummaryWriter`` as an animated GIF summary (TensorBoard's
    Images tab plays it). The summary ``SummaryWriter.add_video`` builds, encoded with imageio instead
    of moviepy (not installed here); ``scale`` shrinks the frames to keep event files small."""
    import io

    import imageio.v2 as imageio
    from tensorboard.compat.proto.summary_pb2 import Summary

    small = [cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for f in frames]
    buffer = io.BytesIO()
    imageio.mimsave(buffer, small, format="GIF", duration=1000 / fps, loop=0)
    h, w, c = small[0].shape
    image = Summary.Image(height=h, width=w, colorspace=c, encoded_image_string=buffer.getvalue())
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
    writer.flush()
