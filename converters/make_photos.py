"""Copy a few real colour photos from scikit-image's bundled sample data into models/photos/.

Why: tests and quantization calibration need real photographs, and the machine is offline.
scikit-image ships several public-domain / CC0 photos inside its wheel; others in
``skimage.data`` are fetched on demand and cannot be used offline, so each one is loaded
inside try/except and silently skipped if it is not available.

Photos are stored as JPEG (quality 92) with the longest side at most 320 px so the repo
stays small; the aspect ratio is kept.

Example::

    python converters/make_photos.py --out-dir models/photos
"""
from __future__ import annotations

import argparse
from pathlib import Path

# name -> licence text as stated in the skimage.data docstring of that photo
PHOTOS = {
    "chelsea": "CC0 by the photographer (Stefan van der Walt); 'No copyright restrictions.'",
    "coffee": "CC0 by the photographer (Rachel Michetti), courtesy of Pikolo Espresso Bar; "
              "'No copyright restrictions.'",
    "astronaut": "NASA Great Images database (Eileen Collins); 'No known copyright restrictions, "
                 "released into the public domain.'",
    "rocket": "SpaceX launch photo of DSCOVR on Falcon 9; 'captured by SpaceX and released in the "
              "public domain.'",
    "retina": "Wikimedia Commons 'Fundus photograph of normal left eye' (Mikael Haggstrom); "
              "'Creative Commons CC0 1.0 Universal Public Domain Dedication.'",
    "hubble_deep_field": "Hubble eXtreme Deep Field from HubbleSite; 'captured by NASA and may be "
                         "freely used in the public domain.'",
}


def load_rgb(name):
    """Return the skimage.data photo ``name`` as an RGB uint8 array, or None if unavailable."""
    import numpy as np
    import skimage.data

    try:
        img = getattr(skimage.data, name)()
    except Exception:  # missing attribute, or a file that would need a download
        return None
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        return None  # only colour photos are wanted
    return img


def save_jpeg(img_rgb, path: Path, max_side: int = 320, quality: int = 92) -> tuple[int, int]:
    """Downscale (INTER_AREA, aspect kept) so the longest side <= max_side and write a JPEG."""
    import cv2

    h, w = img_rgb.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s < 1.0:
        img_rgb = cv2.resize(img_rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    ok = cv2.imwrite(str(path), cv2.cvtColor(img_rgb, cv2.COLOR_RGB2BGR),
                     [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"could not write {path}")
    return img_rgb.shape[1], img_rgb.shape[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default=str(Path(__file__).resolve().parent.parent / "models" / "photos"))
    ap.add_argument("--max-side", type=int, default=320)
    ap.add_argument("--quality", type=int, default=92)
    args = ap.parse_args(argv)

    import skimage

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Sample photos",
        "",
        f"Copied from the sample data bundled in the scikit-image {skimage.__version__} wheel "
        "(`skimage.data.<name>()`, no download) by `converters/make_photos.py`: saved as JPEG "
        f"quality {args.quality}, longest side at most {args.max_side} px (aspect kept, "
        "cv2.INTER_AREA). The licence is what the `skimage.data` docstring of each photo says.",
        "",
        "| file | size (w x h) | origin | licence (per skimage docstring) |",
        "|---|---|---|---|",
    ]
    for name, lic in PHOTOS.items():
        img = load_rgb(name)
        if img is None:
            print(f"skip {name}: not available offline or not a colour photo")
            continue
        w, h = save_jpeg(img, out / f"{name}.jpg", args.max_side, args.quality)
        print(f"wrote {name}.jpg {w}x{h}")
        lines.append(f"| `{name}.jpg` | {w} x {h} | `skimage.data.{name}()` | {lic} |")
    lines += [
        "",
        "Not included: `motorcycle_left` (from `skimage.data.stereo_motorcycle()`, Middlebury 2014 "
        "stereo benchmark) because its docstring states no licence; `horse`, `camera`, `page`, "
        "`text` are not colour photos.",
        "",
    ]
    (out / "NOTE.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
