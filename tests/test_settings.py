"""SamplerSettings checks every field when it is made, naming the field."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import bayesmix as bm


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("cores", 0, "cores must be at least 1"),
        ("cores", -2, "cores must be at least 1"),
        ("cores", 1.0, "cores must be a whole number"),
        ("cores", "4", "cores must be a whole number"),
        ("draws", 1.5, "draws must be a whole number"),
        ("draws", 0, "draws must be at least 1"),
        ("draws", "1000", "draws must be a whole number"),
        ("draws", True, "draws must be a whole number"),
        ("tune", -1, "tune must be 0 or more"),
        ("tune", 10.0, "tune must be a whole number"),
        ("chains", 0, "chains must be at least 1"),
        ("chains", 2.5, "chains must be a whole number"),
        ("chains", False, "chains must be a whole number"),
        ("random_seed", 1.7, "random_seed must be a whole number"),
        ("random_seed", -1, "random_seed must be 0 or more"),
        ("random_seed", "7", "random_seed must be a whole number"),
        ("random_seed", 2**64, "random_seed must be below 2"),
        ("target_accept", "0.9", "target_accept must be a number"),
        ("target_accept", True, "target_accept must be a number"),
        ("target_accept", 1.0, "target_accept must lie strictly between 0 and 1"),
        ("target_accept", 0, "target_accept must lie strictly between 0 and 1"),
        ("target_accept", float("nan"), "target_accept must lie strictly between"),
        ("target_accept", 0.9 + 0j, "target_accept must be a number"),
        ("progressbar", "yes", "progressbar must be true, false or None"),
        ("progressbar", 1, "progressbar must be true, false or None"),
        ("sampler", "stan", "unknown sampler 'stan'"),
        ("sampler", ["nutpie"], "unknown sampler"),
        ("backend", "jax", "unknown backend 'jax'"),
        ("likelihood", "exact", "unknown likelihood 'exact'"),
    ],
)
def test_bad_field_is_a_spec_error_naming_it(field, value, match):
    with pytest.raises(bm.SpecError, match=match):
        bm.SamplerSettings(**{field: value})


def test_updated_and_from_dict_check_too():
    with pytest.raises(bm.SpecError, match="cores must be at least 1"):
        bm.SamplerSettings().updated(cores=0)
    with pytest.raises(bm.SpecError, match="draws must be a whole number"):
        bm.SamplerSettings.from_dict({"draws": 1.5})


def test_numpy_scalars_are_accepted_and_stored_as_plain_python():
    s = bm.SamplerSettings(draws=np.int64(20), random_seed=np.uint32(3),
                           target_accept=np.float32(0.5), progressbar=np.bool_(False))
    assert type(s.draws) is int and type(s.random_seed) is int
    assert type(s.target_accept) is float and s.progressbar is False
    json.dumps(s.to_dict())  # a saved fit stores the settings as JSON


def test_one_chain_is_allowed_with_a_warning_about_r_hat():
    with pytest.warns(UserWarning, match="R-hat needs at least 2 chains"):
        s = bm.SamplerSettings(chains=1)
    assert s.chains == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bm.SamplerSettings(chains=2, cores=1, random_seed=0, target_accept=0.95)
