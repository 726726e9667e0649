"""Every hostile input is refused in one line, nothing hangs, escapes, is lost or silently wrong.

The fuzz families of tests/fuzz/ with a small fixed budget (derandomized, so every CI run tries the
same cases; no shrinking, so a failure costs one case, not a search). Each case must end `ok` or
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


test_model_mutations_are_refused_or_explained = _family_test(model_cases(), 15)
test_external_data_stays_in_the_model_folder = _family_test(external_cases(), 8)
test_paddle_mutations_are_refused_or_explained = _family_test(paddle_cases(), 4)
test_hostile_images = _family_test(image_cases(), 12)
test_argument_values = _family_test(args_cases(), 15)
test_sidecar_contents_and_paths = _family_test(sidecar_cases(), 10)
test_preprocess_files = _family_test(preprocess_cases(), 5)
test_output_situations = _family_test(output_cases(), 8)
test_ctrl_c = _family_test(interrupt_cases(), 1)
test_long_runs_show_progress = _family_test(progress_cases(), 1)
test_api_values = _family_test(api_cases(), 40)
