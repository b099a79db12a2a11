"""A fit's DataTree round-trips through netCDF when a netCDF engine is installed (``mcem[netcdf]``)."""

import warnings

import numpy as np
import pytest
import xarray as xr

import mcem
from mcem.models import glmm_model

pytest.importorskip("h5netcdf")


@pytest.fixture(scope="module")
def fit():
    d = glmm_model.simulate_random_intercept(8, 5, [0.2, -0.3], 0.8, "logit", rng=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mcem.fit(glmm_model.random_intercept_glmm(d["X"], d["y"], d["group"]), rng=2, max_iter=5)


def test_datatree_round_trips_through_netcdf(fit, tmp_path):
    dt = fit.to_datatree()
    path = tmp_path / "fit.nc"
    dt.to_netcdf(path, engine="h5netcdf")
    with xr.open_datatree(path, engine="h5netcdf") as back:
        assert set(back.children) == set(dt.children) == {"posterior", "fit_history", "fit_params"}
        for group in dt.children:
            a, b = dt[group].to_dataset(), back[group].to_dataset().load()
            assert a.equals(b), group  # values, dims and coordinates
            for name in a.data_vars:
                assert a[name].dtype == b[name].dtype, (group, name)  # bool columns come back bool
        assert dict(back.attrs) == dict(dt.attrs)  # scalar attributes (netCDF flattens list ones)
        np.testing.assert_array_equal(back["posterior"]["u"].values, fit.draws["u"])
