"""Write the image folder glyphs/ for glyphs_cnn.nnspec: drawings of four shapes, one subfolder per
class, as a user's own photos would come -- mixed sizes, colours and file formats.

    glyphs/circle/000.png  glyphs/cross/001.JPG  glyphs/square/002.jpeg  glyphs/triangle/003.bmp ...

Each of the 400 images (100 per class) is a square of 28 to 56 pixels: a dark background with some
noise and one filled shape of a random colour, size and position -- a circle, a cross, a square or
a triangle. The file formats cycle through .png, .JPG, .jpeg, .bmp and .gif (JPEG adds its own
artefacts). The colour, size and place say nothing about the class; the form does.

Needs Pillow (``pip install 'nnc[images]'``). Run from anywhere: ``python specs/data/make_glyphs.py``
(about 2 MB; not committed). The output is identical on every run.
"""
from __future__ import annotations

import random
import shutil
from pathlib import Path

CLASSES = ("circle", "cross", "square", "triangle")
PER_CLASS = 100
FORMATS = (".png", ".JPG", ".jpeg", ".bmp", ".gif")


def _draw(rng: random.Random, kind: str):
    from PIL import Image, ImageDraw

    size = rng.randint(28, 56)
    img = Image.new("RGB", (size, size), tuple(rng.randint(0, 50) for _ in range(3)))
    px = img.load()
    for _ in range(size * size // 8):  # sparse noise
        px[rng.randrange(size), rng.randrange(size)] = tuple(rng.randint(0, 90) for _ in range(3))
    draw = ImageDraw.Draw(img)
    colour = tuple(rng.randint(140, 255) for _ in range(3))
    extent = rng.randint(size // 2, size - 4)
    x0, y0 = rng.randint(1, size - extent - 1), rng.randint(1, size - extent - 1)
    x1, y1 = x0 + extent, y0 + extent
    if kind == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=colour)
    elif kind == "square":
        draw.rectangle([x0, y0, x1, y1], fill=colour)
    elif kind == "triangle":
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) // 2, y0)], fill=colour)
    else:
        t = max(2, extent // 4)
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        draw.rectangle([x0, cy - t // 2, x1, cy - t // 2 + t], fill=colour)
        draw.rectangle([cx - t // 2, y0, cx - t // 2 + t, y1], fill=colour)
    return img


def write(folder: Path | None = None, seed: int = 28) -> Path:
    out = folder or Path(__file__).with_name("glyphs")
    if out.exists():
        shutil.rmtree(out)
    rng = random.Random(seed)
    for k, kind in enumerate(CLASSES):
        (out / kind).mkdir(parents=True)
        for i in range(PER_CLASS):
            img = _draw(rng, kind)
            suffix = FORMATS[(i + k) % len(FORMATS)]
            path = out / kind / f"{i:03d}{suffix}"
            if suffix.lower() in (".jpg", ".jpeg"):
                img.save(path, format="JPEG", quality=90)
            elif suffix == ".gif":
                img.convert("P", palette=1, colors=64).save(path, format="GIF")  # palette images
            else:
                img.save(path)
    return out


if __name__ == "__main__":
    print(f"wrote {write()}")
