"""Offscreen rendering of a MuJoCo model (no window, no pickled state).

``MUJOCO_GL`` defaults to ``egl`` (headless; Mesa's software renderer on machines without a
GPU) when the user has not chosen a backend, and ``LP_NUM_THREADS`` (the software renderer's
threads) to 0: small frames render faster in the calling thread. A backend that cannot start
raises one :class:`~slac.errors.InputError` naming the backend and the alternatives.
"""

from __future__ import annotations

import atexit
import os
import weakref

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("LP_NUM_THREADS", "0")  # llvmpipe renders in the calling thread (see envs/__init__.py)

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from envs.backend import RENDER_BACKENDS, backend_error  # noqa: E402

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
    # mujoco picks its backend when imported; without one that loads, it has no GLContext at all
    loaded = getattr(getattr(mujoco, "GLContext", None), "__module__", "").rpartition(".")[2]
    if loaded in RENDER_BACKENDS and loaded != os.environ["MUJOCO_GL"]:
        raise backend_error(f"mujoco was imported with the {loaded!r} backend before envs set MUJOCO_GL; "
                            "import envs before mujoco, or set MUJOCO_GL before Python starts")
    try:
        context = mujoco.GLContext(1, 1)
        context.make_current()
        context.free()
    except Exception as e:  # backend-specific exception types (EGLError, AttributeError from PyOpenGL, ...)
        raise backend_error(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    _BACKEND_OK.append(True)


class Camera:
    """Renders (H, W, 3) uint8 frames of one model from one fixed camera, all geom groups visible.

    A small ``mujoco.Renderer``: a GL context, a render context holding the model's textures and
    meshes, and a scene. :meth:`bind` points it at a rebuilt model with the same assets without
    uploading them again (Safety-Gymnasium recompiles its model at every reset; uploading its
    skybox texture takes ~0.5 s on a software renderer).

    ``fast=True`` drops shadows, reflections and multisampling: on a software renderer (Mesa's
    llvmpipe behind EGL on a machine without a GPU) a 64x64 dm-control cartpole frame then takes
    ~0.5 ms instead of ~20 ms (a 4096² shadow map and a second, reflected pass are most of the
    cost). Observations use it; the overview camera for videos keeps the full look.
    """

    def __init__(self, model: mujoco.MjModel, height: int, width: int, camera: int | str, fast: bool = False):
        check_backend()
        self._gl = self._context = None
        quality, globals_ = model.vis.quality, model.vis.global_
        saved = quality.offsamples, globals_.offwidth, globals_.offheight
        # the render context sizes its offscreen buffer and multisampling from the model when created
        globals_.offwidth, globals_.offheight = max(globals_.offwidth, width), max(globals_.offheight, height)
        if fast:
            quality.offsamples = 0
        try:
            self._gl = mujoco.GLContext(width, height)
            self._gl.make_current()
            self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
            mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        except Exception as e:  # the backend's own exception types differ (EGL, OSMesa, GLFW)
            self.close()
            raise backend_error(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
        finally:
            quality.offsamples, globals_.offwidth, globals_.offheight = saved
        self._fast = fast
        self._rect = mujoco.MjrRect(0, 0, width, height)
        self._pixels = np.empty((height, width, 3), np.uint8)
        self._option = mujoco.MjvOption()
        self._option.geomgroup[:] = 1  # every geom group, so hazards and decorations are visible
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self.camera = camera
        self.assets = asset_signature(model)
        self.bind(model)
        _LIVE.add(self)
        # exit hooks run last-registered first: re-registering with every camera keeps this one ahead
        # of the GL libraries' eglTerminate hooks (dm_control registers one when it is first imported)
        atexit.unregister(_close_all)
        atexit.register(_close_all)

    def bind(self, model: mujoco.MjModel) -> None:
        """Render ``model`` from now on; it must have the assets the camera was created with."""
        if asset_signature(model) != self.assets:
            raise ValueError("a Camera can only be re-bound to a model with the same textures and meshes")
        camera_id = self.camera if isinstance(self.camera, int) else model.camera(self.camera).id
        self._model = model
        self._scene = mujoco.MjvScene(model, maxgeom=10000)
        if self._fast:  # scene flags persist across scene updates
            self._scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            self._scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        self._camera.fixedcamid = camera_id

    def render(self, data: mujoco.MjData) -> np.ndarray:
        self._gl.make_current()
        mujoco.mjv_updateScene(self._model, data, self._option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL,
                               self._scene)
        mujoco.mjr_render(self._rect, self._scene, self._context)
        mujoco.mjr_readPixels(self._pixels, None, self._rect, self._context)
        return self._pixels[::-1].copy()  # OpenGL's rows run bottom-up

    def close(self) -> None:
        if self._context is not None:
            # its textures and framebuffers are freed in the current GL context: if another camera's
            # were current, that camera would lose its own (same ids) and render garbage from then on
            self._gl.make_current()
            self._context.free()
            self._context = None
        if self._gl is not None:
            self._gl.free()
            self._gl = None


def asset_signature(model: mujoco.MjModel) -> tuple:
    """What a render context holds of a model: its textures, materials' textures, meshes, height fields."""
    return (model.ntex, model.nmat, model.nmesh, model.nhfield, model.nskin, model.tex_width.tobytes(),
            model.tex_height.tobytes(), model.mat_texid.tobytes(), model.mesh_vertnum.tobytes())


def _close_all() -> None:
    """Free GL contexts before the backend is torn down at exit (else EGL prints errors)."""
    for camera in list(_LIVE):
        camera.close()
