"""A dataset of small JPEGs made from the bundled photos by augmentation (tests and benchmarks of
dataset runs): random crop, flip, rotation and brightness, at most `side` pixels, seeded."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

PHOTOS = sorted((Path(__file__).resolve().parent.parent / "models" / "photos").glob("*.jpg"))


def make_dataset(folder: Path, n: int, seed: int = 0, side: int = 160, subfolders: int = 4) -> list[Path]:
    """n JPEGs under folder/c0 .. c{subfolders-1} (a nested tree, as a validation set is); their paths."""
    rng = np.random.default_rng(seed)
    sources = []
    for p in PHOTOS:
        img = cv2.imread(str(p))
        f = 2 * side / max(img.shape[:2])
        sources.append(cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA))
    paths = []
    for i in range(n):
        img = sources[i % len(sources)]
        h, w = img.shape[:2]
        ch, cw = int(h * rng.uniform(0.5, 1.0)), int(w * rng.uniform(0.5, 1.0))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = img[y:y + ch, x:x + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        m = cv2.getRotationMatrix2D((cw / 2, ch / 2), float(rng.uniform(-20, 20)), 1.0)
        crop = cv2.warpAffine(np.ascontiguousarray(crop), m, (cw, ch), borderMode=cv2.BORDER_REFLECT)
        crop = np.clip(crop.astype(np.float32) * rng.uniform(0.7, 1.3), 0, 255).astype(np.uint8)
        f = side / max(crop.shape[:2])
        crop = cv2.resize(crop, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        path = Path(folder) / f"c{i % subfolders}" / f"img_{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths
