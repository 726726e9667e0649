"""Every hostile input is refused in one line, nothing hangs, escapes, is lost or silently wrong.

The fuzz families of tests/fuzz/ with a small fixed budget: 210 cases, about 2 minutes on 2 cores
when all pass (0.5-1 s per CLI case, 0.1 s per API case, 25 s for the progress case). Derandomized,
so every CI run tries the same cases; no shrinking, so a failure costs one case, not a search. Each case must end `ok` or
`refused` (see tests/fuzz/harness.py for the categories). The longer run behind README's
"Reliability" figures: `python tests/fuzz/run_fuzz.py --cases 2000`.
"""
from __future__ import annotations

from hypothesis import HealthCheck, Phase, given, settings

from fuzz.api import api_cases
from fuzz.harness import shell_command
from fuzz.strategies import (args_cases, external_cases, image_cases, interrupt_cases, model_cases,
                             output_cases, paddle_cases, preprocess_cases, progress_cases,
                             sidecar_cases)
from fuzz.workspace import execute


def _family_test(strategy, examples: int):
    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(plan=strategy)
    def test(plan):
        case, outcome = execute(plan)
        how = (f"\nreplay: python tests/fuzz/run_fuzz.py --families {plan.family} --keep /tmp/fuzz-cases"
               + (f"\nor: {shell_command(case)} (after planting the case's files)" if case.argv else ""))
        assert not outcome.failed, f"{outcome.category}: {plan.description} -- {outcome.detail}{how}"
    return test


test_model_mutations_are_refused_or_explained = _family_test(model_cases(), 25)
test_external_data_stays_in_the_model_folder = _family_test(external_cases(), 12)
test_paddle_mutations_are_refused_or_explained = _family_test(paddle_cases(), 6)
test_hostile_images = _family_test(image_cases(), 20)
test_argument_values = _family_test(args_cases(), 25)
test_sidecar_contents_and_paths = _family_test(sidecar_cases(), 20)
test_preprocess_files = _family_test(preprocess_cases(), 8)
test_output_situations = _family_test(output_cases(), 12)
test_ctrl_c = _family_test(interrupt_cases(), 1)
test_long_runs_show_progress = _family_test(progress_cases(), 1)
test_api_values = _family_test(api_cases(), 80)


# ----------------------------------------------------------------------------- the harness itself
def _case(tmp_path, **kw):
    from fuzz.harness import Case
    return Case(family="t", description="t", cwd=tmp_path, argv=["explain"], **kw)


def test_the_harness_tells_each_category_apart(tmp_path):
    """A classifier that called everything `ok` would make the suite pass vacuously."""
    import numpy as np
    from fuzz.harness import classify_cli

    out = tmp_path / "out"
    out.mkdir()
    np.savez(out / "good.npz", logits=np.ones(3, np.float32))
    one_line = "onnxcam: error: image not found: x.png\n"
    assert classify_cli(_case(tmp_path, out=out), 0, "", "").category == "ok"
    assert classify_cli(_case(tmp_path), 2, "", one_line).category == "refused"
    assert classify_cli(_case(tmp_path), 1, "", "Traceback (most recent call last):\n  File x\nValueError: y\n"
                        ).category == "traceback"
    assert classify_cli(_case(tmp_path), 2, "", one_line + "more\n").category == "traceback"
    assert classify_cli(_case(tmp_path), 2, "", "onnxcam: error: bad model: /onnxruntime_src/onnxruntime/"
                        "core/graph/graph.cc:1234 failed\n").category == "traceback"
    assert classify_cli(_case(tmp_path), -6, "", "").category == "crash"
    assert classify_cli(_case(tmp_path), 139, "", "").category == "crash"
    assert classify_cli(_case(tmp_path), None, "", "").category == "hang"
    assert classify_cli(_case(tmp_path, secret="S3CRET"), 0, "cat S3CRET-1", "").category == "escape"
    assert classify_cli(_case(tmp_path, out=out, if_accepted="silent_wrong"), 0, "", "").category == "silent_wrong"
    assert classify_cli(_case(tmp_path, out=out, if_accepted="escape"), 2, "", one_line).category == "refused"
    kept = tmp_path / "kept.png"
    kept.write_bytes(b"new")
    assert classify_cli(_case(tmp_path, protected={kept: b"old"}), 2, "", one_line).category == "lost"
    np.savez(out / "bad.npz", map_0=np.array([np.nan], np.float32))
    assert classify_cli(_case(tmp_path, out=out), 0, "", "").category == "silent_wrong"
    (out / "bad.npz").unlink()
    (out / ".x.png.123.tmp").write_bytes(b"")
    assert classify_cli(_case(tmp_path, out=out), 0, "", "").category == "lost"


def test_the_harness_runs_the_cli_with_limits(tmp_path):
    """One real run each way: a valid explain is `ok`, a missing image is `refused`."""
    from fuzz.harness import Case
    from fuzz.strategies import MODEL, Plan
    from fuzz.workspace import small_model_bytes

    def plan(images):
        def make(box):
            box.write_model(small_model_bytes())
            box.image()
            return Case("t", "t", box.root, argv=["explain", MODEL, *images, "--out", "out", "--method", "gradcam"],
                        out=box.out, secret=box.secret, timeout=60)
        return Plan("t", "t", make)

    assert execute(plan(["img.png"]))[1].category == "ok"
    assert execute(plan(["missing.png"]))[1].category == "refused"
