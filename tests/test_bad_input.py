"""Bad input at every public entry point, as a matrix: each case names the argument."""

import warnings

import numpy as np
import pytest
from test_algorithms import linkage_model
from test_checkpoint_trust import tampered_checkpoint
from test_model_validation import complex_init, indexed
from test_ppl_trust import coin
from test_serial import crafted_result

import mcem
from mcem import constraints as C
from mcem import dist
from mcem.compare import compare_to_reference
from mcem.estep_factory import make_estep
from mcem.inference import degeneracy, marginal_loglik
from mcem.models import genetic_linkage


def re_model(log_joint=None, data=None):
    y = np.array([0.3, -1.2, 2.0]) if data is None else data

    def good(theta, z, data):
        return -0.5 * (data - z["u"]) ** 2 - 0.5 * (z["u"] - theta["mu"]) ** 2

    return mcem.Model(log_joint or good, params={"mu": C.real}, latents={"u": mcem.Continuous(shape=3, unit=True)},
                      data=y)


@mcem.model
def ppl_model(m, y):
    mu = m.param("mu")
    u = m.latent("u", dist.Normal(mu, 1.0), shape=y.size, unit=True)
    m.observe("y", dist.Normal(u, 1.0), y, unit_index=np.arange(y.size))


def _re_subset(units):
    """re_model restricted to the units (its data are one value per unit)."""
    y = np.array([0.3, -1.2, 2.0])[units]

    def lj(theta, z, data):
        return -0.5 * (data - z["u"]) ** 2 - 0.5 * (z["u"] - theta["mu"]) ** 2

    return mcem.Model(lj, params={"mu": C.real}, latents={"u": mcem.Continuous(shape=len(units), unit=True)}, data=y)


class _SerialExecutor:
    def submit(self, fn, *args):
        from concurrent.futures import Future

        f = Future()
        f.set_result(fn(*args))
        return f


def _a_directory():
    import tempfile

    return tempfile.mkdtemp()


def _plain_checkpoint():
    import tempfile

    path = tempfile.mkdtemp() + "/plain.mcem"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mcem.fit(linkage_model(), method="mcem", max_iter=1, schedule="fixed", m_init=10, n_chains=1,
                 burn=5, checkpoint=path, rng=0)
    return path


X = np.random.default_rng(0).normal(size=(40, 2))
GM = mcem.models.gaussian_mixture(X, 2)
TH = GM.default_theta()

def _lj_chain(theta, z, data=None):
    return np.zeros(np.shape(z["s"])[:-1])


CASES = [
    # (entry point, what, callable, exception, message regex)
    ("Model", "chains entry not a Chain", lambda: mcem.Model(_lj_chain, params={"mu": C.real}, latents={"s": mcem.Discrete(2, shape=(5,))}, chains={"s": _lj_chain}), TypeError, r"chains\['s'\] must be an mcem.Chain, got function"),
    ("Model", "chain latent declared with unit=True", lambda: mcem.Model(_lj_chain, params={"mu": C.real}, latents={"s": mcem.Discrete(2, shape=(5,), unit=True)}, chains={"s": mcem.Chain(_lj_chain, _lj_chain)}), ValueError, r"chains\['s'\]: a chain latent cannot be declared with unit=True"),
    ("dist", "MarkovChain without a length", lambda: mcem.dist.MarkovChain(np.full(2, 0.5), np.full((2, 2), 0.5)), TypeError, r"MarkovChain: length \(the number of time steps, a positive int\) is required, got None"),
    ("EStep", "a chain sampler on a latent that is not a chain", lambda: mcem.EStep(mcem.Model(_lj_chain, params={"mu": C.real}, latents={"s": mcem.Discrete(2, shape=(5,))}), sampler="ffbs"), ValueError, r"sampler: the FFBS kernel samples a latent that forms a chain; latent 's' of model"),
    ("Model", "NaN in data", lambda: re_model(data=np.array([1.0, np.nan, 0.0])), ValueError, r"data must be finite, got 1 NaN"),
    ("Model", "inf in data", lambda: re_model(data=np.array([1.0, np.inf, 0.0])), ValueError, r"data must be finite, got 0 NaN and 1 inf"),
    ("Model", "empty data", lambda: re_model(data=np.zeros(0)), ValueError, r"data is empty"),
    ("Model", "params not constraints", lambda: mcem.Model(lambda t, z, d: 0, params={"mu": 1.0}, latents={}), TypeError, r"params\['mu'\] must be a continuous constraint"),
    ("Model", "latent spec of the wrong type", lambda: mcem.Model(lambda t, z, d: 0, params={"mu": C.real}, latents={"u": 3}), TypeError, r"latents\['u'\] must be mcem.Discrete"),
    ("Model", "unknown extra", lambda: mcem.Model(lambda t, z, d: 0, params={"mu": C.real}, latents={}, mstep=3), TypeError, r"mstep must be callable or None, got int"),
    ("ppl", "NaN in observed data", lambda: ppl_model(y=np.array([1.0, np.nan])), ValueError, r"data\['y'\] must be finite"),
    ("ppl", "missing data argument", lambda: ppl_model(), TypeError, r"ppl_model: missing a required argument: 'y'"),
    ("ppl", "jit not a bool", lambda: mcem.model(ppl_model.fn, jit="yes"), TypeError, r"model: jit must be True or False, got 'yes'"),
    ("Model.grad_params", "theta missing a parameter", lambda: ppl_model(y=np.array([0.5, 1.0])).grad_params({}, {"u": np.zeros((2, 2))}), ValueError, r"theta is missing parameter\(s\)"),
    ("fit", "theta0 outside its constraint", lambda: mcem.fit(GM, {**TH, "weights": np.array([0.9, 0.9])}), ValueError, r"theta0\['weights'\] must lie in simplex\(2\)"),
    ("fit", "theta0 missing a parameter", lambda: mcem.fit(GM, {"means": TH["means"]}), ValueError, r"theta0 is missing parameter\(s\) \['covariances', 'weights'\]"),
    ("fit", "theta0 of the wrong shape", lambda: mcem.fit(GM, {**TH, "means": np.zeros(5)}), ValueError, r"theta0\['means'\] must have shape \(2, 2\), got shape \(5,\)"),
    ("fit", "theta0 with strings", lambda: mcem.fit(GM, {**TH, "means": "a"}), TypeError, r"theta0\['means'\] must be numeric \(a float array\), got str 'a'"),
    ("fit", "unknown method", lambda: mcem.fit(GM, method="mcmc"), ValueError, r"method must be one of \['auto', 'em', 'gem', 'mcem', 'saem', 'vbem'\], got 'mcmc'"),
    ("fit", "unknown option", lambda: mcem.fit(GM, method="mcem", n_chain=2), TypeError, r"method='mcem' got unknown option\(s\) \['n_chain'\]"),
    ("fit", "an option no method takes, method auto", lambda: mcem.fit(GM, n_chain=2), TypeError, r"fit: method='auto' got unknown option\(s\) \['n_chain'\], which no method takes"),
    ("fit", "SAEM precision rule without the average", lambda: mcem.fit(GM, method="saem", average=False), ValueError, r"stop='precision' judges the Polyak-Ruppert average: it needs average=True"),
    ("fit", "unknown stopping rule", lambda: mcem.fit(GM, method="mcem", stop="upper"), ValueError, r"stop must be one of \['ascent', 'precision', 'relative'\], got 'upper'"),
    ("Model", "conditionals not a dict", lambda: mcem.Model(lambda t, z, d: 0, params={"mu": C.real}, latents={}, conditionals=[1]), TypeError, r"conditionals must be a dict \{latent name: fn\(theta, z, data\)\} or None, got list \[1\]"),
    ("Model", "data of dtype object", lambda: re_model(data=np.array([1, "a", 2.0], dtype=object)), TypeError, r"data must be a numeric array \(or an array of strings\), got an array of dtype object \(int 1 at index \(0,\)\)"),
    ("Model", "a list mixing numbers and strings as data", lambda: re_model(data=[0.3, "a", 2.0]), TypeError, r"data must be a numeric array \(or an array of strings\), got a list mixing strings with other values \(float 0.3 at index \(0,\)\)"),
    ("Model", "complex init", lambda: mcem.Model(lambda t, z, d: 0, params={"mu": C.real}, latents={}, init={"mu": 2j}), TypeError, r"init\['mu'\] must be real \(a float array\), got complex 2j"),
    ("Continuous", "complex init", lambda: mcem.Continuous(init=1j), TypeError, r"Continuous: init must be real \(a float array\), got complex 1j"),
    ("ppl", "observed data outside the support", lambda: coin(y=np.array([0, 1, 0, 2])), ValueError, r"observe 'y': Bernoulli needs values in \{0, 1\}; got 2 at index \(3,\)"),
    ("ppl", "observed strings", lambda: coin(y=np.array(["0", "1"])), TypeError, r"observe 'y': Bernoulli needs real numbers \(values in \{0, 1\}\); got an array of dtype <U1"),
    ("ppl", "data of dtype object", lambda: ppl_model(y=np.array([1, "a"], dtype=object)), TypeError, r"data\['y'\] must be a numeric array \(or an array of strings\), got an array of dtype object \(int 1 at index \(0,\)\)"),
    ("ppl", "unit_index of floats", lambda: indexed(y=np.zeros(4), idx=np.array([0.0, 1.0, 1.0, 2.0]), G=3), TypeError, r"observe 'y': unit_index\['u'\] must be a 1-D integer array, got float64 of shape \(4,\)"),
    ("ppl", "negative unit_index", lambda: indexed(y=np.zeros(4), idx=np.array([0, 1, -1, 2]), G=3), ValueError, r"observe 'y': unit_index\['u'\] must lie in 0..2, got values from -1 to 2 \(first bad: -1 at index 2\)"),
    ("ppl", "unit_index beyond the units", lambda: indexed(y=np.zeros(4), idx=np.array([0, 1, 2, 3]), G=3), ValueError, r"observe 'y': unit_index\['u'\] must lie in 0..2, got values from 0 to 3 \(first bad: 3 at index 3\)"),
    ("ppl", "unit_index of the wrong length", lambda: indexed(y=np.zeros(4), idx=np.array([0, 1, 2]), G=3), ValueError, r"observe 'y': unit_index\['u'\] must have one entry per element of the first axis of the observation \(shape \(4,\)\), got 3 entries"),
    ("ppl", "complex init", lambda: complex_init(y=np.zeros(2)), TypeError, r"param 'mu': init must be real \(a float array\), got complex \(1\+1j\)"),
    ("fit", "complex theta0", lambda: mcem.fit(re_model(), {"mu": 1 + 2j}), TypeError, r"theta0\['mu'\] must be real \(a float array\), got complex \(1\+2j\)"),
    ("fit", "method given as a list", lambda: mcem.fit(GM, method=["em"]), TypeError, r"method must be one of \['auto', 'em', 'gem', 'mcem', 'saem', 'vbem'\] \(a string\), got list \['em'\]"),
    ("fit", "tol given as a string", lambda: mcem.fit(GM, tol="0.01"), TypeError, r"tol must be a real number, got str '0.01'"),
    ("fit", "negative tol", lambda: mcem.fit(GM, tol=-1.0), ValueError, r"tol must be a finite non-negative number, got -1.0"),
    ("marginal_loglik", "target_se not positive", lambda: marginal_loglik(re_model(), {"mu": 0.0}, {"u": np.zeros((1, 5, 3))}, target_se=0), ValueError, r"target_se must be a finite positive number, got 0"),
    ("marginal_loglik", "max_samples below 2", lambda: marginal_loglik(re_model(), {"mu": 0.0}, {"u": np.zeros((1, 5, 3))}, max_samples=1), ValueError, r"max_samples must be an int >= 2, got 1"),
    ("marginal_loglik", "n_samples below 2", lambda: marginal_loglik(re_model(), {"mu": 0.0}, {"u": np.zeros((1, 5, 3))}, n_samples=1), ValueError, r"n_samples must be an int >= 2, got 1"),
    ("marginal_loglik", "draws without a latent", lambda: marginal_loglik(re_model(), {"mu": 0.0}, {"v": np.zeros((1, 5, 3))}), ValueError, r"draws has no draws of latent 'u'; it holds \['v'\]"),
    ("marginal_loglik", "draws of the wrong shape", lambda: marginal_loglik(re_model(), {"mu": 0.0}, {"u": np.zeros((5, 4))}), ValueError, r"draws\['u'\] must have shape \(chain, draw, 3\), got \(5, 4\)"),
    ("marginal_loglik", "a single draw", lambda: marginal_loglik(re_model(), {"mu": 0.0}, {"u": np.zeros((1, 1, 3))}), ValueError, r"draws\['u'\] must hold at least 2 draws to fit a proposal, got 1"),
    ("marginal_loglik", "draws not a dict", lambda: marginal_loglik(re_model(), {"mu": 0.0}, [np.zeros((1, 5, 3))]), TypeError, r"draws must be a dict latent name -> \(chain, draw, \*shape\) array, got list"),
    ("degeneracy", "not a model", lambda: degeneracy("m", {"mu": 0.0}), TypeError, r"model must be an mcem.Model, got str"),
    ("degeneracy", "theta missing a parameter", lambda: degeneracy(re_model(), {}), ValueError, r"theta is missing parameter\(s\) \['mu'\]"),
    ("degeneracy", "theta of the wrong shape", lambda: degeneracy(re_model(), {"mu": np.zeros(3)}), ValueError, r"theta\['mu'\] must have shape \(\), got shape \(3,\)"),
    ("EStep", "min_acceptance outside (0, 1)", lambda: mcem.EStep(re_model(), min_acceptance=1.5), ValueError, r"min_acceptance must lie strictly between 0 and 1, got 1.5"),
    ("EStep", "warn given as a string", lambda: mcem.EStep(re_model(), warn="no"), TypeError, r"warn must be True or False, got str 'no'"),
    ("resume", "unknown method in the checkpoint", lambda: mcem.resume(tampered_checkpoint("method"), genetic_linkage()), ValueError, r"bad\.mcem' is invalid: unknown method 'mcmc'; expected one of \['em', 'gem', 'mcem', 'saem', 'vbem'\]"),
    ("resume", "history removed", lambda: mcem.resume(tampered_checkpoint("history"), genetic_linkage()), ValueError, r"bad\.mcem' cannot be read: it lacks 'history'"),
    ("resume", "chains of the wrong shape", lambda: mcem.resume(tampered_checkpoint("chains"), genetic_linkage()), ValueError, r"loop\['state'\]: the chains' positions of latent 'x2' have shape \(2, 3\); the model declares 'x2' of shape \(\), so expected \(n_chains,\)"),
    ("resume", "negative iteration counter", lambda: mcem.resume(tampered_checkpoint("counter"), genetic_linkage()), ValueError, r"is invalid: the counter loop\['t'\] is -1; expected an int >= 0"),
    ("resume", "theta outside its constraint", lambda: mcem.resume(tampered_checkpoint("theta"), genetic_linkage()), ValueError, r"is invalid: loop\['theta'\]\['theta'\] must lie in interval\(0\.0, 1\.0\), got 1\.5"),
    ("resume", "unknown bit generator", lambda: mcem.resume(tampered_checkpoint("bitgen"), genetic_linkage()), ValueError, r"loop\['rng'\] names the bit generator 'RandomState'; only numpy's PCG64, PCG64DXSM, Philox, SFC64, MT19937 are rebuilt"),
    ("resume", "a class path to code", lambda: mcem.resume(tampered_checkpoint("code"), genetic_linkage()), ValueError, r"loop\['state'\]\.kernel_state names the class 'mcem\.checkpoint:os\.system', which is not one of mcem's chain-state classes"),
    ("resume", "history chunk missing", lambda: mcem.resume(tampered_checkpoint("chunk"), genetic_linkage()), ValueError, r"its history chunk 'real\.mcem\.history/[0-9a-f]{16}-000000\.npz' is missing"),
    ("resume", "another model's data", lambda: mcem.resume(tampered_checkpoint("fine"), genetic_linkage(counts=(125, 18, 20, 35))), ValueError, r"model does not match the checkpoint '.*real\.mcem': the data differ \(data\['counts'\]\)"),
    ("resume", "max_iter not positive", lambda: mcem.resume(tampered_checkpoint("fine"), genetic_linkage(), max_iter=0), ValueError, r"max_iter must be an int >= 1, got 0"),
    ("resume", "max_iter given as a string", lambda: mcem.resume(tampered_checkpoint("fine"), genetic_linkage(), max_iter="5"), ValueError, r"max_iter must be an int >= 1, got '5'"),
    ("resume", "callback not callable", lambda: mcem.resume(tampered_checkpoint("fine"), genetic_linkage(), callback=3), TypeError, r"callback must be callable or None, got int"),
    ("EStep", "shards given to EStep", lambda: mcem.EStep(re_model(), shards=2), TypeError, r"EStep takes no shards: build a sharded E step with mcem\.ShardedEStep"),
    ("EStep", "unknown keyword", lambda: mcem.EStep(re_model(), chains=2), TypeError, r"EStep got unexpected keyword argument\(s\) \['chains'\]"),
    ("make_estep", "executor without shards", lambda: make_estep(re_model(), executor=_SerialExecutor()), ValueError, r"executor needs shards=k"),
    ("Model.check", "log_joint reducing axis 1", lambda: re_model(lambda th, z, d: (-0.5 * (d - z["u"]) ** 2).sum(axis=1)).check(), ValueError, r"Model\.check: Q estimate \(chains, draws\): log_joint gives other values for the same latents"),
    ("Model.check", "theta outside its constraint", lambda: re_model().check(theta={"mu": np.nan}), ValueError, r"Model\.check: validate \(2,\): theta\['mu'\] must lie in"),
    ("Model.check", "rng of the wrong type", lambda: re_model().check(rng="seed"), TypeError, r"rng must be None, an int seed or a numpy.random.Generator, got str"),
    ("compare_to_reference", "result not a FitResult", lambda: compare_to_reference({"params": TH}, TH), TypeError, r"result must be an mcem.FitResult \(from mcem.fit\), got dict"),
    ("compare_to_reference", "reference not a dict", lambda: compare_to_reference(mcem.fit(GM, method="em"), [1.0]), TypeError, r"reference_params must be a dict of parameter values, got list \[1.0\]"),
    ("compare_to_reference", "reference missing a parameter", lambda: compare_to_reference(mcem.fit(GM, method="em"), {"weights": TH["weights"]}), ValueError, r"reference_params must give every parameter of the fit \['covariances', 'means', 'weights'\], missing \['covariances', 'means'\]"),
    ("compare_to_reference", "reference of the wrong shape", lambda: compare_to_reference(mcem.fit(GM, method="em"), {**TH, "means": np.zeros(3)}), ValueError, r"reference_params\['means'\] must have the shape of the fit's parameter, \(2, 2\), got shape \(3,\)"),
    ("compare_to_reference", "standard error not numeric", lambda: compare_to_reference(mcem.fit(GM, method="em"), TH, {"means": "big"}), TypeError, r"reference_se\['means'\] must be a number or numeric array, got str 'big'"),
    ("compare_to_reference", "derived not (parameter, f, df)", lambda: compare_to_reference(mcem.fit(GM, method="em"), TH, derived={"w": ("weights", np.log)}), TypeError, r"derived\['w'\] must be a tuple \(parameter, f, df\) with f and df callable"),
    ("compare_to_reference", "derived from an array parameter", lambda: compare_to_reference(mcem.fit(GM, method="em"), TH, derived={"w": ("weights", np.log, np.reciprocal)}), ValueError, r"derived\['w'\] must name a scalar parameter of the fit \[\], got 'weights'"),
    ("compare_to_reference", "mcse of the wrong shape", lambda: compare_to_reference(mcem.fit(GM, method="em"), TH, mcse={"means": np.zeros(3)}), ValueError, r"mcse\['means'\] must have the shape of the fit's parameter, \(2, 2\), got shape \(3,\)"),
    ("batch_means_cov", "draws without a vector axis", lambda: mcem.diagnostics.batch_means_cov(np.zeros((2, 20))), ValueError, r"batch_means_cov: x must have shape \(chain, draw, p\), got shape \(2, 20\)"),
    ("cov_of_mean", "values without a vector axis", lambda: mcem.diagnostics.cov_of_mean(np.zeros((2, 20))), ValueError, r"cov_of_mean: s must have shape \(chain, draw, p\), got shape \(2, 20\)"),
    ("load_result", "a malformed node in the file", lambda: mcem.load_result(crafted_result("unknown")), ValueError, r"fit\.npz: corrupted mcem result: settings\['x'\] has an unknown node type 'eval'"),
    ("fit", "gamma outside (0, 1)", lambda: mcem.fit(GM, method="mcem", gamma=1.5), ValueError, r"gamma must lie strictly between 0 and 1, got 1.5"),
    ("fit", "expand not a flag or 'auto'", lambda: mcem.fit(GM, method="mcem", expand="yes"), ValueError, r"expand must be 'auto', True or False, got 'yes'"),
    ("fit", "expand=True where no expanded step can be taken", lambda: mcem.fit(GM, method="mcem", expand=True), ValueError, r"expand=True needs a model with a parameter-expanded M step .*without expanded_mstep\), mstep='closed_form'"),
    ("fit", "m_max below m_init", lambda: mcem.fit(GM, method="mcem", m_init=10, m_max=5), ValueError, r"m_max must be at least m_init=10 \(the sample size can only grow\), got m_max=5"),
    ("fit", "a flag given as a string", lambda: mcem.fit(GM, method="mcem", track_loglik="no"), TypeError, r"track_loglik must be True or False, got str 'no'"),
    ("fit", "SAEM average given as a string", lambda: mcem.fit(GM, method="saem", average="yes"), TypeError, r"average must be True or False, got str 'yes'"),
    ("fit", "negative memory_tol", lambda: mcem.fit(GM, method="saem", memory_tol=-1), ValueError, r"memory_tol must be a finite non-negative number, got -1"),
    ("fit", "optimizer_options not a dict", lambda: mcem.fit(GM, method="mcem", optimizer_options="x"), TypeError, r"optimizer_options must be a dict of options or None, got str 'x'"),
    ("fit", "an empty schedule list", lambda: mcem.fit(GM, method="mcem", schedule=[]), ValueError, r"schedule: a list of sample sizes must have at least one entry"),
    ("fit", "checkpoint not a path", lambda: mcem.fit(GM, method="mcem", checkpoint=3), TypeError, r"checkpoint must be a file path \(str or os.PathLike\) or None, got int 3"),
    ("fit", "checkpoint the empty string", lambda: mcem.fit(GM, method="mcem", checkpoint=""), ValueError, r"checkpoint must be a file path, got the empty string ''"),
    ("fit", "checkpoint a directory", lambda: mcem.fit(GM, method="mcem", checkpoint=_a_directory()), ValueError, r"checkpoint must be a file path, got '.*', which is a directory"),
    ("compare", "a method named twice", lambda: mcem.compare(GM, ("em", "em")), ValueError, r"methods must name each method once, got \['em'\] more than once"),
    ("compare", "methods a string", lambda: mcem.compare(GM, "em"), TypeError, r"methods must be a list or tuple of method names, got str 'em'"),
    ("compare", "options not a dict", lambda: mcem.compare(GM, options=3), TypeError, r"options must be a dict of options or None, got int 3"),
    ("compare", "a method's options not a dict", lambda: mcem.compare(GM, options={"em": 3}), TypeError, r"options\['em'\] must be a dict of options, got int 3"),
    ("GaussianMixture", "fit_options not a dict", lambda: mcem.models.GaussianMixture(2, fit_options="x").fit(X), TypeError, r"fit_options must be a dict of options or None, got str 'x'"),
    ("GaussianMixture", "data out of range", lambda: mcem.models.GaussianMixture(2).fit(X * 1e300), ValueError, r"X is out of range: its largest magnitude .* makes the sums of squares overflow"),
    ("fit", "unknown sampler", lambda: mcem.fit(GM, method="mcem", sampler="nuts"), ValueError, r"sampler"),
    ("fit", "unknown schedule", lambda: mcem.fit(GM, method="mcem", schedule="fast"), ValueError, r"schedule must be 'ascent'"),
    ("fit", "unknown mstep", lambda: mcem.fit(GM, method="mcem", mstep="newton"), ValueError, r"mstep must be one of"),
    ("fit", "bad n_chains", lambda: mcem.fit(GM, method="mcem", n_chains=0), ValueError, r"n_chains must be an int >= 1, got 0"),
    ("fit", "bad rng", lambda: mcem.fit(GM, rng=1.5), TypeError, r"rng must be None, an int seed or a numpy.random.Generator, got float"),
    ("fit", "negative seed", lambda: mcem.fit(GM, rng=-1), ValueError, r"rng must be a non-negative int seed, got -1"),
    ("fit", "log_joint raises", lambda: mcem.fit(re_model(lambda t, z, d: 1 / 0), {"mu": 0.0}, method="mcem"), ZeroDivisionError, r"log_joint raised ZeroDivisionError"),
    ("fit", "log_joint returns NaN", lambda: mcem.fit(re_model(lambda t, z, d: np.full(z["u"].shape, np.nan)), {"mu": 0.0}, method="mcem"), ValueError, r"log_joint returned NaN"),
    ("fit", "log_joint returns +inf", lambda: mcem.fit(re_model(lambda t, z, d: np.full(z["u"].shape, np.inf)), {"mu": 0.0}, method="mcem"), ValueError, r"log_joint returned \+inf"),
    ("fit", "log_joint of the wrong shape", lambda: mcem.fit(re_model(lambda t, z, d: np.zeros(7)), {"mu": 0.0}, method="mcem"), ValueError, r"log_joint must return one value per batch element"),
    ("fit", "log_joint returns strings", lambda: mcem.fit(re_model(lambda t, z, d: np.array(["x", "y"])), {"mu": 0.0}, method="mcem"), TypeError, r"log_joint must return a float array"),
    ("fit", "initial latents with zero density", lambda: mcem.fit(re_model(lambda t, z, d: np.full(z["u"].shape, -np.inf)), {"mu": 0.0}, method="mcem"), ValueError, r"log_joint is -inf at theta0 and the initial latents"),
    ("resume", "not a model", lambda: mcem.resume("x.mcem", model="m"), TypeError, r"model must be an mcem.Model, got str"),
    ("resume", "missing file", lambda: mcem.resume("/nonexistent/x.mcem", linkage_model()), FileNotFoundError, r"checkpoint '/nonexistent/x.mcem' does not exist"),
    ("compare", "unknown method", lambda: mcem.compare(GM, methods=("em", "newton")), ValueError, r"methods must be among"),
    ("compare", "not a model", lambda: mcem.compare(X), TypeError, r"model must be an mcem.Model, got ndarray"),
    ("gaussian_mixture", "NaN in X", lambda: mcem.models.gaussian_mixture(np.array([[1.0, np.nan]] * 5), 2), ValueError, r"X must be finite, got 5 NaN"),
    ("gaussian_mixture", "3-D X", lambda: mcem.models.gaussian_mixture(np.zeros((2, 2, 2)), 2), ValueError, r"X must be 2-D"),
    ("GaussianMixture", "bad covariance_type", lambda: mcem.models.GaussianMixture(2, covariance_type="ties").fit(X), ValueError, r"covariance_type must be one of \['diag', 'full', 'spherical', 'tied'\], got 'ties'"),
    ("GaussianMixture", "more components than samples", lambda: mcem.models.GaussianMixture(50).fit(X), ValueError, r"X must have at least n_components=50 samples, got 40"),
    ("GaussianMixture", "n_components not an int", lambda: mcem.models.GaussianMixture(2.5).fit(X), ValueError, r"n_components must be an int >= 1, got 2.5"),
    ("GaussianMixture", "unknown init_params", lambda: mcem.models.GaussianMixture(2, init_params="k-medoids").fit(X), ValueError, r"init_params must be one of \['k-means\+\+', 'kmeans', 'random', 'random_from_data'\], got 'k-medoids'"),
    ("GaussianMixture", "unknown method", lambda: mcem.models.GaussianMixture(2, method="mcmc").fit(X), ValueError, r"method must be one of \['em', 'gem', 'mcem', 'saem', 'vbem'\], got 'mcmc'"),
    ("GaussianMixture", "precisions_init of the wrong shape", lambda: mcem.models.GaussianMixture(2, precisions_init=np.eye(2)).fit(X), ValueError, r"precisions_init must have shape \(2, 2, 2\) \(n_components, n_features, n_features for covariance_type='full'\), got shape \(2, 2\)"),
    ("GaussianMixture", "precisions_init not positive definite", lambda: mcem.models.GaussianMixture(2, covariance_type="tied", precisions_init=-np.eye(2)).fit(X), ValueError, r"precisions_init must hold symmetric positive-definite matrices for covariance_type='tied'; precisions_init has smallest eigenvalue -1"),
    ("GaussianMixture", "1-D X", lambda: mcem.models.GaussianMixture(2).fit(X[:, 0]), ValueError, r"Expected 2D array, got 1D array instead"),
    ("GaussianMixture", "complex X", lambda: mcem.models.GaussianMixture(2).fit(X + 1j), ValueError, r"Complex data not supported"),
    ("GaussianMixture", "NaN in X", lambda: mcem.models.GaussianMixture(2).fit(np.where(X > 2, np.nan, X)), ValueError, r"Input X contains NaN"),
    ("GaussianMixture", "random_state and rng both given", lambda: mcem.models.GaussianMixture(2, random_state=0, rng=0).fit(X), ValueError, r"random_state and rng are two names of one argument; give one of them, got random_state=0 and rng=0"),
    ("GaussianMixture", "predict before fit", lambda: mcem.models.GaussianMixture(2).predict(X), ValueError, r"This GaussianMixture instance is not fitted yet"),
    ("EStep", "not a model", lambda: mcem.EStep("m"), TypeError, r"model must be an mcem.Model, got str"),
    ("ShardedEStep", "shards of a model without subset", lambda: mcem.ShardedEStep(re_model(), shards=2), ValueError, r"cannot be restricted to a subset of its units: it has no subset function"),
    ("ShardedEStep", "executor without shards", lambda: mcem.ShardedEStep(re_model(), executor=_SerialExecutor()), ValueError, r"executor needs shards=k"),
    ("ShardedEStep", "executor that is not one", lambda: mcem.ShardedEStep(re_model(), shards=2, executor="pool"), TypeError, r"executor must be a concurrent.futures.Executor .*got str"),
    ("ShardedEStep", "more shards than units", lambda: mcem.ShardedEStep(re_model().with_subset(_re_subset), shards=4), ValueError, r"shards must be at most the number of latent units \(3\), got 4"),
    ("ShardedEStep", "blocks that do not add up", lambda: mcem.ShardedEStep(re_model().with_subset(lambda u: _re_subset(np.arange(len(u)))), shards=3), ValueError, r"not the sum of the log joints of its subsets"),
    ("Model.subset", "units not increasing", lambda: re_model().with_subset(_re_subset).subset(np.array([2, 0])), ValueError, r"units must be strictly increasing indices in 0..2, got"),
    ("Model.subset", "subset returns the wrong size", lambda: re_model().with_subset(lambda u: re_model()).subset(np.array([0, 1])), ValueError, r"returned latents \{'u': \(3,\)\} for 2 units; expected unit latents of shapes \{'u': \(2,\)\}"),
    ("resume", "executor for an unsharded run", lambda: mcem.resume(_plain_checkpoint(), linkage_model(), executor=_SerialExecutor()), ValueError, r"executor is only for runs with a sharded E step"),
    ("fit", "vbem with an unknown family", lambda: mcem.fit(GM, method="vbem", family="diagonal"), ValueError, r"family must be one of \['fullrank', 'meanfield'\], got 'diagonal'"),
    ("fit", "vbem with one draw per iteration", lambda: mcem.fit(re_model(), method="vbem", m=1), ValueError, r"m \(draws per iteration\) must be at least 2, got 1"),
    ("fit", "vbem on discrete latents that are not one unit latent", lambda: mcem.fit(mcem.Model(_lj_chain, params={"p": mcem.constraints.unit_interval}, latents={"s": mcem.Discrete(2, shape=3)}), method="vbem"), ValueError, r"method='vbem' needs continuous latents, or one discrete unit latent .* has discrete latent\(s\) \['s'\] that are not one unit latent"),
    ("load_result", "not a result file", lambda: mcem.load_result(__file__), ValueError, r"test_bad_input.py"),
    ("FitResult.conf_int", "alpha outside (0, 1)", lambda: mcem.FitResult(params={"mu": 0.0}).conf_int(1.5), ValueError, r"alpha must lie strictly between 0 and 1, got 1.5"),
    ("FitResult.summary", "alpha of 0", lambda: mcem.FitResult(params={"mu": 0.0}).summary(alpha=0), ValueError, r"alpha must lie strictly between 0 and 1, got 0"),
    ("FitResult.bse", "a loaded result without its model", lambda: mcem.FitResult(params={"mu": 0.0}).bse, ValueError, r"this result does not hold its model .* fit.attach\(model\)"),
    ("FitResult.attach", "not a model", lambda: mcem.FitResult(params={"mu": 0.0}).attach("model"), TypeError, r"attach: model must be an mcem.Model, got str"),
    ("anova", "fits on different data", lambda: mcem.anova(mcem.FitResult(params={"mu": 0.0}, loglik=-3.0, nobs=10, df_model=1), mcem.FitResult(params={"mu": 0.0, "s": 1.0}, loglik=-2.0, nobs=12, df_model=2)), ValueError, r"anova: the fits are on different data: their numbers of observations \(nobs\) differ: fit1: 10, fit2: 12"),
    ("anova", "a single fit", lambda: mcem.anova(mcem.FitResult(params={"mu": 0.0}, loglik=-3.0, nobs=10, df_model=1)), ValueError, r"anova needs at least two fits of nested models, got 1"),
    ("anova", "fits with the same number of parameters", lambda: mcem.anova(mcem.FitResult(params={"mu": 0.0}, loglik=-3.0, df_model=1), mcem.FitResult(params={"nu": 0.0}, loglik=-2.0, df_model=1)), ValueError, r"fits 'fit1' and 'fit2' have the same number of free parameters \(1\), so they are not nested"),
    ("anova", "not a fit", lambda: mcem.anova(mcem.FitResult(params={"mu": 0.0}, loglik=-3.0, df_model=1), {"params": {}}), TypeError, r"anova: fits\[1\] must be an mcem.FitResult \(from mcem.fit\), got dict"),
    ("Model", "labels of the wrong length", lambda: mcem.Model(lambda t, z, d: 0.0, params={"mu": C.real}, latents={}, labels={"mu": ["a", "b"]}), ValueError, r"labels\['mu'\] must hold 1 distinct label\(s\) \(one per element of shape \(\), C order\), got \['a', 'b'\]"),
    ("Model", "labels of an unknown parameter", lambda: mcem.Model(lambda t, z, d: 0.0, params={"mu": C.real}, latents={}, labels={"sigma": ["s"]}), ValueError, r"labels has unknown parameter 'sigma'; the model's parameters are \['mu'\]"),
]


@pytest.mark.parametrize("entry, what, call, exc, match", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_bad_input_gets_a_clear_error(entry, what, call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_a_sampler_that_never_accepts_warns_and_flags_the_history():
    def stuck(theta, z, data):  # zero density everywhere but the initial point u = 0
        u = z["u"]
        return np.where(u == 0.0, -0.5 * (u - theta["mu"]) ** 2, -np.inf)

    model = re_model(stuck)
    with pytest.warns(mcem.MonteCarloWarning, match="acceptance"):
        res = mcem.fit(model, {"mu": 0.5}, method="mcem", sampler="rwm", max_iter=3, tol=1e-12,
                       schedule="fixed", m_init=40, rng=0)
    assert np.all(res.history["low_acceptance"][1:] == 1.0)
    assert np.all(np.isfinite(res.params["mu"]))


def test_an_mstep_that_leaves_the_space_stops_the_fit_with_the_last_good_theta_and_warns():
    m = linkage_model()
    broken = mcem.Model(m.log_joint_fn, params=m.params, latents=m.latents, init={"t": 0.3},
                        sufficient_stats=m.sufficient_stats_fn, mstep=lambda s, d: {"t": 1.5})
    with pytest.warns(mcem.ConvergenceWarning, match="stopped at iteration 1: the M step's result"):
        res = mcem.fit(broken, method="mcem", max_iter=2, tol=1e-12, rng=0, schedule="fixed", m_init=20)
    assert res.stopped_by == "invalid_update" and not res.converged
    assert res.params["t"] == pytest.approx(0.3)


def test_the_docs_list_every_case_of_the_matrix():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    missing = [f"{e}: {w}" for e, w, *_ in CASES if f"| {e} | {w} |" not in doc]
    assert not missing, f"docs/errors.md lacks rows for {missing}"
