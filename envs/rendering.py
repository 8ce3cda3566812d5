"""Offscreen rendering of a MuJoCo model with ``mujoco.Renderer`` (no window, no pickled state).

``MUJOCO_GL`` defaults to ``egl`` (headless; Mesa's software renderer on machines without a
GPU) when the user has not chosen a backend. A backend that cannot start raises one
:class:`~envs.errors.InputError` naming the backend and the alternatives.
"""

from __future__ import annotations

import atexit
import os
import weakref

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from envs.errors import RENDER_BACKENDS, backend_error  # noqa: E402

_LIVE: weakref.WeakSet = weakref.WeakSet()
_BACKEND_OK: list[bool] = []


def check_backend() -> None:
    """Start (once) a 1x1 GL context of the chosen backend; InputError if it cannot start.

    Called before dm-control or Safety-Gymnasium are imported: both load the backend at import
    and would otherwise fail deep inside OpenGL bindings.
    """
    if _BACKEND_OK:
        return
    if os.environ.get("MUJOCO_GL") not in RENDER_BACKENDS:
        raise backend_error("not a backend name")
    try:
        context = mujoco.GLContext(1, 1)
        context.make_current()
        context.free()
    except Exception as e:  # backend-specific exception types (EGLError, AttributeError from PyOpenGL, ...)
        raise backend_error(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    _BACKEND_OK.append(True)


class Camera:
    """Renders (H, W, 3) uint8 frames of one model from one camera, all geom groups visible.

    ``fast=True`` drops shadows, reflections and multisampling: on a software renderer (Mesa's
    llvmpipe behind EGL on a machine without a GPU) a 64x64 dm-control cartpole frame then takes
    ~0.7 ms instead of ~20 ms (a 4096² shadow map and a second, reflected pass are most of the
    cost). Observations use it; the overview camera for videos keeps the full look.
    """

    def __init__(self, model: mujoco.MjModel, height: int, width: int, camera: int | str, fast: bool = False):
        check_backend()
        quality, globals_ = model.vis.quality, model.vis.global_
        offsamples = quality.offsamples
        # the context's offscreen buffer is sized from the model when it is created
        globals_.offwidth, globals_.offheight = max(globals_.offwidth, width), max(globals_.offheight, height)
        if fast:
            quality.offsamples = 0
        try:
            self._renderer = mujoco.Renderer(model, height, width)
        except Exception as e:  # the backend's own exception types differ (EGL, OSMesa, GLFW)
            raise backend_error(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
        finally:
            quality.offsamples = offsamples
        if fast:  # scene flags persist across update_scene calls
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        self._option = mujoco.MjvOption()
        self._option.geomgroup[:] = 1  # every geom group, so hazards and decorations are visible
        self.camera = camera
        _LIVE.add(self)
        # exit hooks run last-registered first: re-registering with every camera keeps this one ahead
        # of the GL libraries' eglTerminate hooks (dm_control registers one when it is first imported)
        atexit.unregister(_close_all)
        atexit.register(_close_all)

    def render(self, data: mujoco.MjData) -> np.ndarray:
        self._renderer.update_scene(data, camera=self.camera, scene_option=self._option)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def _close_all() -> None:
    """Free GL contexts before the backend is torn down at exit (else EGL prints errors)."""
    for camera in list(_LIVE):
        camera.close()
