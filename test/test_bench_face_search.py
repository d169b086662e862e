"""``python -m training.bench.face_search``: face vs background confidences, any input mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.bench.face_search import mean_confidences, summary


@pytest.mark.parametrize("mode", ["fused", "event", "rgb"])
def test_confidences_of_face_and_background_crops(
    random_lite_checkpoint: Path, synth_bag: Path, mode: str
) -> None:
    conf = mean_confidences(random_lite_checkpoint, [str(synth_bag)], 6, 0, mode)
    assert set(conf) == {"face", "background"}
    for x in conf.values():
        assert x.size > 0 and np.all((x >= 0) & (x <= 1))
    res = summary(conf)
    assert 0 <= res["roc_auc"] <= 1 and res["n_face"] == conf["face"].size


def test_unknown_mode_is_refused(random_lite_checkpoint: Path, synth_bag: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        mean_confidences(random_lite_checkpoint, [str(synth_bag)], 4, 0, "thermal")
