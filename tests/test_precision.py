"""check_precision's options: masters exact, nearest drifts and loses small updates, regenerate and stochastic help."""

import pytest
import torch

import blackbox_zo as bz
from blackbox_zo.weights.precision import OPTIONS, check_precision


@pytest.mark.parametrize("dtype, update", [(torch.bfloat16, 1e-5), (torch.float16, 1e-6)])
def test_each_option_reports_drift_and_lost_update(dtype, update):
    """Updates ~1/10 of half an ulp of a 0.02 weight: nearest keeps almost none; the stochastic estimate's
    standard error at 65 k weights is ~0.015 (lost_fraction_se), so 0.1 is a 6-sigma band."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 256).to(dtype)
    torch.nn.init.normal_(lin.weight, std=0.02)
    space = bz.ParamSpace(lin, master_weights=False)
    before = {n: p.detach().clone() for n, p in space.tensors.items()}
    report = check_precision(space, update=update)
    assert {"drift_rms", "landed_fraction", "eps", "update"} <= set(report) and set(report["options"]) == set(OPTIONS)
    opt = report["options"]
    assert opt["masters"]["drift_rms"] < 1e-8 and abs(opt["masters"]["lost_fraction"]) < 1e-3
    assert opt["nearest"]["lost_fraction"] > 0.5  # most of the update rounds away (small weights keep some)
    assert opt["regenerate"]["restored"] > opt["nearest"]["restored"] + 0.2  # re-deriving theta beats -2d, +d
    assert opt["regenerate"]["drift_rms"] < opt["nearest"]["drift_rms"] / 3
    assert opt["stochastic"]["lost_fraction_se"] < 0.02 and abs(opt["stochastic"]["lost_fraction"]) < 0.1  # unbiased
    assert opt["masters"]["extra_bytes_per_weight"] == 4 and opt["stochastic"]["extra_bytes_per_weight"] == 0
    assert all(torch.equal(p, before[n]) for n, p in space.tensors.items())  # the check leaves the model as it was


def test_float32_model_can_ask_what_bfloat16_would_do():
    lin = torch.nn.Linear(64, 64)
    report = check_precision(bz.ParamSpace(lin), dtype=torch.bfloat16)
    assert report["drift_rms"] < 1e-8 and report["options"]["nearest"]["lost_fraction"] > 0.5
