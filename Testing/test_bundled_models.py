"""The bundled DiCE models: each loads, carries a complete card, fits the size limit, is found by the
lookup for every view count it serves, and reconstructs a phantom at the fast preset better than FDK."""

import json

import pytest
import torch

from deepsparse_core import inference
from deepsparse_core.data.hu import normalize_hu
from deepsparse_core.data.phantoms import make_phantom
from deepsparse_core.data.projections_file import ProjectionData
from deepsparse_core.evaluation.metrics import psnr
from deepsparse_core.model.card import MAX_BUNDLED_BYTES, missing_card_fields
from deepsparse_core.model.model_file import load_model, read_model_metadata
from deepsparse_core.physics.geometry import Geometry
from deepsparse_core.physics.noise import NoiseModel, add_noise
from deepsparse_core.physics.projector import forward_project
from deepsparse_core.reconstruct import reconstruct

BUNDLED = inference.bundled_models()
pytestmark = pytest.mark.skipif(not BUNDLED, reason="no bundled DiCE model installed")


@pytest.mark.parametrize("path, span", BUNDLED, ids=[p.name for p, _ in BUNDLED])
def test_bundled_model_loads_with_a_complete_card(path, span):
    assert path.stat().st_size <= MAX_BUNDLED_BYTES
    model, meta = load_model(path)
    card = meta["card"]
    assert missing_card_fields(card) == []
    assert card["architecture"]["parameters"] == model.num_parameters()
    assert (card["views"]["min"], card["views"]["max"]) == span
    assert meta["geometry"] is not None       # the lookup's compatibility check needs the training scanner
    for n in range(span[0], span[1] + 1):
        assert inference.bundled_model_path(n) is not None
    json.dumps(card, allow_nan=False)         # strict JSON


@pytest.mark.slow
@pytest.mark.parametrize("n_views", sorted({lo for _, (lo, _hi) in BUNDLED} | {hi for _, (_lo, hi) in BUNDLED}))
def test_bundled_model_beats_fdk_on_a_phantom_at_the_fast_preset(n_views, one_thread):
    g = Geometry.preset("fast", n_views)
    reference = torch.from_numpy(normalize_hu(make_phantom("pelvis", g.volume_shape, g.volume_spacing, seed=11),
                                              g.hu_window))
    projections = add_noise(forward_project(reference, g), g.hu_window, NoiseModel(), seed=11)
    data = ProjectionData(projections, g)
    fdk = reconstruct(data, "fdk").clamp(0, 1)
    dice = reconstruct(data, "dice", device="cpu", data_consistency=0)   # the bundled model, network alone
    assert dice.shape == reference.shape and torch.isfinite(dice).all()
    assert psnr(dice, reference) > psnr(fdk, reference) + 1.0
    assert read_model_metadata(inference.default_model_for(data))["card"]["views"]["min"] <= n_views
