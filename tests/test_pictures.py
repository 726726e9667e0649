"""Pictures at the photo's resolution: maps mapped back through the preprocessing, captions,
styles, montages and the demo, checked on the produced pixels."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

import onnxcam
from onnxcam.cli import main
from onnxcam.mapback import seen_mask, to_photo
from onnxcam.preprocess import PreprocessSpec, fit_view, view_box, view_geometry
from conftest import LITE0, PHOTOS


def _photo(tmp_path, w: int, h: int, name: str = "big.png"):
    """The bundled cat photo resized to w x h, written as a PNG; returns (path, rgb)."""
    rgb = cv2.cvtColor(cv2.imread(str(PHOTOS / "chelsea.jpg")), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    path = tmp_path / name
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path, rgb


def _read(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_center_crop_map_lands_on_the_photo_pixels_the_model_saw():
    # a 400x200 photo, shorter side 200 -> 100 (crop_fraction 1): resized 200x100, the view is its
    # columns 50..150, i.e. photo columns 100..300
    spec = PreprocessSpec(size=(100, 100), resize="center_crop", crop_fraction=1.0)
    heat = np.zeros((100, 100), np.float32)
    heat[:10, :10] = 1.0                        # hot top-left corner of the view
    out = to_photo(heat, (200, 400), spec)
    assert out.shape == (200, 400)
    assert np.isnan(out[:, :100]).all() and np.isnan(out[:, 300:]).all()   # never seen
    assert not np.isnan(out[:, 100:300]).any()
    hot = np.argwhere(out > 0.5)
    assert hot[:, 0].min() == 0 and hot[:, 0].max() == 19 and hot[:, 1].min() == 100 and hot[:, 1].max() == 119
    assert view_geometry((200, 400), spec).seen_box() == (100.0, 0.0, 300.0, 200.0)
    assert seen_mask((200, 400), spec).sum() == 200 * 200
    # the same geometry as the view the model sees and the boxes mapped into it
    photo = np.zeros((200, 400, 3), np.uint8)
    photo[:20, 100:120] = 255
    view = fit_view(photo, spec)
    assert (view[:10, :10] == 255).all() and (view[10:, 10:] == 0).all()
    assert view_box((0.25, 0.0, 0.75, 1.0), (200, 400), spec) == (0, 0, 100, 100)


def test_stretch_is_a_plain_resize_and_letterbox_pads_and_maps_back():
    rng = np.random.default_rng(0)
    heat = rng.uniform(size=(224, 224)).astype(np.float32)
    stretch = PreprocessSpec()
    np.testing.assert_allclose(to_photo(heat, (213, 320), stretch),
                               cv2.resize(heat, (320, 213), interpolation=cv2.INTER_LINEAR), atol=1e-5)
    box = PreprocessSpec(size=(100, 100), resize="letterbox")
    photo = np.full((50, 100, 3), 200, np.uint8)          # wide photo: padded above and below
    view = fit_view(photo, box)
    assert view.shape == (100, 100, 3)
    assert (view[:25] == 114).all() and (view[75:] == 114).all() and (view[25:75] == 200).all()
    band = np.zeros((100, 100), np.float32)
    band[25:50] = 1.0                                       # the top half of the photo in the view
    back = to_photo(band, (50, 100), box)
    assert back.shape == (50, 100) and not np.isnan(back).any()
    assert (back[:24] > 0.9).all() and (back[26:] < 0.1).all()
    assert view_box((0, 0, 1, 1), (50, 100), box) == (0, 25, 100, 75)


def test_overlay_and_scale_map_api():
    photo = np.full((300, 500, 3), 128, np.uint8)
    heat = np.zeros((7, 7), np.float32)
    heat[0, 0] = 1.0
    out = onnxcam.overlay(photo, heat, alpha=0.6, colormap="turbo")
    assert out.shape == (300, 500, 3) and out.dtype == np.uint8
    assert not np.array_equal(out[5, 5], out[295, 495])     # hot corner differs from the cold one
    holes = np.full((300, 500), 0.5, np.float32)
    holes[:, :100] = np.nan                                  # unexplained: dimmed, hatched, no heat
    drawn = onnxcam.overlay(photo, holes)
    assert drawn[:, :100].mean() < 80 and len(np.unique(drawn[:, :100].reshape(-1, 3), axis=0)) >= 2
    crop = PreprocessSpec(size=(100, 100), resize="center_crop", crop_fraction=1.0)
    mapped = onnxcam.overlay(photo, np.zeros((100, 100), np.float32), preprocess=crop)   # 500x300: sees x 100..400
    assert mapped.shape == (300, 500, 3) and mapped[:, :95].mean() < 80 and mapped[:, 105:395].mean() > 80
    scaled = onnxcam.scale_map(np.array([[1.0, 3.0], [2.0, 5.0]]), (40, 60))
    assert scaled.shape == (40, 60) and scaled.min() == 0 and scaled.max() == pytest.approx(1.0)
    assert onnxcam.scale_map(np.ones((2, 3, 3)), (5, 5)).shape == (2, 5, 5)
    with pytest.raises(onnxcam.OnnxCamError, match="unknown colormap 'nope'; choose one of .*jet"):
        onnxcam.overlay(photo, heat, colormap="nope")
    with pytest.raises(onnxcam.OnnxCamError, match="alpha must be"):
        onnxcam.overlay(photo, heat, alpha=2)


def test_explain_draws_captioned_overlays_at_the_photo_resolution(tmp_path, capsys):
    path, rgb = _photo(tmp_path, 1000, 640)
    out = tmp_path / "o"
    assert main(["explain", str(LITE0), str(path), "--method", "hirescam", "--out", str(out)]) == 0
    png = next(out.glob("big_hirescam_*.png"))
    img = _read(png)
    assert img.shape[1] == 1000 and img.shape[0] > 640      # the photo's width, a caption strip below
    strip = img[640:]
    assert strip.std() > 20 and (strip < 100).any()           # dark text on white, not a blank strip
    npz = np.load(out / "big_hirescam.npz")
    assert npz["map_0"].shape == (224, 224) and npz["photo_map_0"].shape == (640, 1000)
    assert tuple(npz["photo_hw"]) == (640, 1000) and not np.isnan(npz["photo_map_0"]).any()
    # centre crop: the sides the model never saw are NaN and drawn hatched
    assert main(["explain", str(LITE0), str(path), "--method", "hirescam", "--resize", "center_crop",
                 "--out", str(tmp_path / "crop")]) == 0
    crop = np.load(tmp_path / "crop" / "big_hirescam.npz")
    x0, y0, x1, y1 = crop["seen_box"]
    assert x0 > 100 and x1 < 900 and y0 > 0 and y1 < 640
    assert np.isnan(crop["photo_map_0"][:, :int(x0) - 1]).all()
    assert np.isnan(crop["photo_map_0"][:int(y0) - 1]).all()
    assert not np.isnan(crop["photo_map_0"][int(y0) + 1:int(y1) - 1, int(x0) + 1:int(x1) - 1]).any()
    drawn = _read(next((tmp_path / "crop").glob("big_hirescam_*.png")))
    assert drawn[:640, :int(x0) - 2].mean() < rgb[:, :int(x0) - 2].mean()   # dimmed outside the crop
    # --at model: the view the model saw, as before
    assert main(["explain", str(LITE0), str(path), "--method", "hirescam", "--at", "model",
                 "--out", str(tmp_path / "model")]) == 0
    assert _read(next((tmp_path / "model").glob("big_hirescam_*.png"))).shape[1] == 224
    assert "photo_map_0" not in np.load(tmp_path / "model" / "big_hirescam.npz")


def test_several_methods_write_one_montage_per_image(tmp_path, capsys):
    path, _ = _photo(tmp_path, 320, 213, "cat.png")
    out = tmp_path / "o"
    assert main(["explain", str(LITE0), str(path), "--method", "gradcam,hirescam,scorecam", "--top-k", "8",
                 "--colormap", "inferno", "--alpha", "0.4", "--shared-scale", "--out", str(out), "--json"]) == 0
    import json
    summary = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in summary["runs"]] == ["gradcam", "hirescam", "scorecam"]
    montage = _read(out / "cat_montage.png")
    gap = max(2, 320 // 80)
    assert montage.shape[1] == 3 * 320 + 2 * gap and montage.shape[0] > 213
    title = montage[:20]
    assert title.std() > 10                                   # the title strip has text
    for m in ("gradcam", "hirescam", "scorecam"):             # each method's own files too
        assert (out / f"cat_{m}.npz").exists() and len(list(out.glob(f"cat_{m}_*.png"))) == 1


def test_layer_grid_has_a_title_and_four_columns(tmp_path, capsys):
    path, _ = _photo(tmp_path, 320, 213, "cat.png")
    assert main(["explain", str(LITE0), str(path), "--method", "gradcam", "--layer",
                 "/_blocks.9/Add_output_0", "/_blocks.10/Add_output_0", "/_blocks.14/Add_output_0",
                 "/_swish_1/Clip_output_0", "/_blocks.4/Add_output_0", "--out", str(tmp_path)]) == 0
    grid = _read(tmp_path / "cat_gradcam_grid.png")
    gap = max(2, 320 // 80)
    assert grid.shape[1] == 4 * 320 + 3 * gap
    assert grid.shape[0] > 2 * 213                              # two rows of tiles under a title
    assert grid[:25].std() > 10


def test_style_flags_are_range_checked(tmp_path, capsys):
    img = str(PHOTOS / "chelsea.jpg")
    for flag, value, words in (("--colormap", "nope", "viridis"), ("--alpha", "2", "0 (photo only) to 1"),
                               ("--method", "gradcam,nope", "unknown method 'nope'"),
                               ("--at", "screen", "invalid choice")):
        assert main(["explain", str(LITE0), img, flag, value, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("onnxcam: error:") and err.count("\n") == 1 and words in err
    assert not (tmp_path / "o").exists()


def test_demo_writes_one_captioned_montage_per_photo(tmp_path, monkeypatch, capsys):
    from onnxcam import demo
    monkeypatch.setattr(demo, "DEMO_PHOTOS", ("chelsea",))   # one photo keeps the test short
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "Egyptian cat" in out and "output folder: onnxcam-demo" in out
    assert "onnxcam compare" in out and "onnxcam evaluate" in out and "onnxcam export-explainer" in out
    assert sorted(p.name for p in (tmp_path / "onnxcam-demo").iterdir()) == ["chelsea_montage.png"]
    montage = _read(tmp_path / "onnxcam-demo" / "chelsea_montage.png")
    gap = max(2, 320 // 80)
    assert montage.shape[1] == 5 * 320 + 4 * gap             # five tiles at the photo's 320 px
    assert montage.shape[0] > 213 + 40                        # title above, captions below
    captions = montage[-25:]
    assert captions.std() > 10
    assert main(["demo"]) == 0                                # never touches the first one's files
    assert (tmp_path / "onnxcam-demo-1" / "chelsea_montage.png").is_file()
