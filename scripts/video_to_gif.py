"""Turn an evaluation mp4 into a small GIF for docs/ (every k-th frame, scaled down).

    python scripts/video_to_gif.py VIDEO.mp4 OUT.gif [--every 2] [--scale 0.5] [--fps 10] [--frames N]
"""

from __future__ import annotations

import argparse
import sys

import cv2
import imageio.v2 as imageio


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video")
    p.add_argument("gif")
    p.add_argument("--every", type=int, default=2, help="keep every k-th frame")
    p.add_argument("--scale", type=float, default=0.5)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--frames", type=int, default=0, help="stop after this many source frames (0: all)")
    args = p.parse_args(argv)
    reader = imageio.get_reader(args.video)
    frames = []
    for i, frame in enumerate(reader):
        if args.frames and i >= args.frames:
            break
        if i % args.every == 0:
            frames.append(cv2.resize(frame, None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_AREA))
    reader.close()
    imageio.mimsave(args.gif, frames, duration=1000 / args.fps, loop=0)
    print(f"{args.gif}: {len(frames)} frames of {frames[0].shape[1]}x{frames[0].shape[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
