"""The conformance check every backend's tests run (like scikit-learn's ``check_estimator``).

from creaturekit.discovery.conformance import check_discoverer
check_discoverer(lambda seed: MyBackend(..., seed=seed), image_paths, tmp_path)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from creaturekit.discovery.base import Discoverer
from creaturekit.discovery.errors import NotFittedError
from creaturekit.discovery.features import ImageInput


def _expect_not_fitted(call: Callable[[], object], what: str) -> None:
    try:
        call()
    except NotFittedError:
        return
    raise AssertionError(f"{what} on an unfitted discoverer must raise NotFittedError")


def check_discoverer(
    factory: Callable[[int], Discoverer], images: Sequence[ImageInput], tmp: Path
) -> Discoverer:
    """Assert the discoverer contract; returns the fitted discoverer for further checks."""
    fresh = factory(0)
    assert fresh.name, "a backend sets a registry name"
    params = fresh.get_params()
    assert type(fresh)(**params).get_params() == params, "config must be the constructor args"
    _expect_not_fitted(lambda: fresh.encode(images[:1]), "encode")
    _expect_not_fitted(lambda: fresh.save(tmp / "unfitted"), "save")

    fitted = fresh.fit(images)
    assert fitted is fresh, "fit returns self"
    coding = fitted.coding_
    n_parts = fitted.hierarchy_.n_parts
    h, w = fitted.grid_
    assert coding.masks.shape == (len(images), h * w)
    assert coding.codes.shape == (len(images), n_parts)
    assert len(fitted.hierarchy_.sub_centroids) == n_parts
    assert [p.index for p in fitted.report_.parts] == list(range(n_parts))
    assert fitted.report_.parts[-1].is_background

    again = factory(0).fit(images)
    before, after = fitted.hierarchy_.tensors(), again.hierarchy_.tensors()
    assert before.keys() == after.keys()
    for a, b in zip(before.values(), after.values(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg="same seed must give the same result")
    np.testing.assert_array_equal(fitted.coding_.codes, again.coding_.codes)

    encoded = fitted.encode(images)
    fitted.save(tmp / "saved")
    loaded = type(fitted).load(tmp / "saved")
    assert loaded.get_params() == params
    reloaded = loaded.encode(images)
    np.testing.assert_array_equal(encoded.masks, reloaded.masks, err_msg="save/load round trip")
    np.testing.assert_array_equal(encoded.codes, reloaded.codes, err_msg="save/load round trip")
    return fitted
