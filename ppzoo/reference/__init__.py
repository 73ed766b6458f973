"""Reference posteriors: NumPyro ports of 15 posteriordb models and a comparison against their draws.

posteriordb (Magnusson, Bürkner and Vehtari) ships, for each posterior, a Stan model, its data and
10,000 reference draws made by Stan's NUTS (10 chains x 1,000 draws, thinned by 10 from 10,000). ppzoo
ships 15 of them as package data in ``ppzoo/data/validation/posteriordb/`` (draws stored as float32, read
back as float64; see :func:`ppzoo.data.validation_dir`). This module ports each model to a plain
NumPyro function that defines *the same* posterior density (flat improper priors where Stan has no prior
statement, Stan's constrained-space priors on ordered vectors, GARCH's triangle), loads the data and the
draws, and compares any set of posterior draws against the reference with tolerances derived from Monte
Carlo error.

Every quantity in the reference draws is a sample or ``numpyro.deterministic`` site of the port with the
same name and shape (``theta`` of shape ``(8,)`` for eight schools), so ``fit.samples`` can be compared
directly. The reference name ``theta[1]`` (Stan, 1-based) is our ``theta[..., 0]``.

| posterior | model function | data keys |
| --- | --- | --- |
| ``arK-arK`` | :func:`ark` | ``K``, ``y`` |
| ``arma-arma11`` | :func:`arma11` | ``y`` |
| ``diamonds-diamonds`` | :func:`diamonds` | ``X``, ``Y`` |
| ``earnings-logearn_interaction_z`` | :func:`logearn_interaction_z` | ``earn``, ``height``, ``male`` |
| ``eight_schools-eight_schools_noncentered`` | :func:`eight_schools_noncentered` | ``y``, ``sigma`` |
| ``garch-garch11`` | :func:`garch11` | ``y``, ``sigma1`` |
| ``gp_pois_regr-gp_pois_regr`` | :func:`gp_pois_regr` | ``x``, ``k`` |
| ``hmm_example-hmm_example`` | :func:`hmm_example` | ``y`` |
| ``hudson_lynx_hare-lotka_volterra`` | :func:`lotka_volterra` | ``ts``, ``y_init``, ``y`` |
| ``kidiq-kidscore_interaction`` | :func:`kidscore_interaction` | ``kid_score``, ``mom_hs``, ``mom_iq`` |
| ``kilpisjarvi_mod-kilpisjarvi`` | :func:`kilpisjarvi` | ``x``, ``y``, ``pmualpha``, ... ``psbeta`` |
| ``low_dim_gauss_mix-low_dim_gauss_mix`` | :func:`low_dim_gauss_mix` | ``y`` |
| ``mesquite-logmesquite_logvas`` | :func:`logmesquite_logvas` | ``weight``, ``diam1``, ... ``group`` |
| ``one_comp_mm_elim_abs-one_comp_mm_elim_abs`` | :func:`one_comp_mm_elim_abs` | ``t0``, ... ``C_hat`` |
| ``sblrc-blr`` | :func:`blr` | ``X``, ``y`` |

Data keys are those of posteriordb's ``data.json``; sizes that follow from the arrays (``N``, ``T``,
``J``, ...) and keys the model does not read are dropped.

Floating point: Stan works in double precision. Only the GP (:func:`gp_pois_regr`) needs float64
(``jax.enable_x64``) to define Stan's density exactly, because its covariance is numerically singular in
float32 and gets a larger jitter there; ``ReferencePosterior.x64`` flags it. With NumPyro NUTS (4 x 1000) the
GP matched the reference in both precisions (float64 needed 365 leapfrog steps per draw, float32 636), and
the other fourteen ports matched it in float32.

References
----------
.. [1] Magnusson, M., Bürkner, P.-C. and Vehtari, A. posteriordb: a set of posteriors for Bayesian
   inference and probabilistic programming. https://github.com/stan-dev/posteriordb (commit 28f8d3d,
   BSD-3-Clause; see its CITATION.cff).
.. [2] Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Bürkner, P.-C. (2021). Rank-normalization,
   folding, and localization: an improved R-hat for assessing convergence of MCMC. Bayesian Analysis 16(2).
Modules: :mod:`~ppzoo.reference.ports` (the NumPyro models), :mod:`~ppzoo.reference.posteriordb` (which port
goes with which posterior; loading data and draws), :mod:`~ppzoo.reference.stan` (Stan's scalar names),
:mod:`~ppzoo.reference.comparison` (draws against the reference).
"""

from ppzoo.reference.comparison import compare_to_reference, reference_table
from ppzoo.reference.ports import (
    GP_JITTER,
    ODE_SETTINGS,
    GaussianHMM,
    ark,
    arma11,
    blr,
    diamonds,
    eight_schools_noncentered,
    garch11,
    gp_pois_regr,
    hmm_example,
    kidscore_interaction,
    kilpisjarvi,
    logearn_interaction_z,
    logmesquite_logvas,
    lotka_volterra,
    low_dim_gauss_mix,
    one_comp_mm_elim_abs,
)
from ppzoo.reference.posteriordb import ReferencePosterior, load_reference, reference_names
from ppzoo.reference.stan import assemble_draws, stan_names

__all__ = [
    "ReferencePosterior",
    "reference_names",
    "load_reference",
    "compare_to_reference",
    "reference_table",
    "stan_names",
    "assemble_draws",
    "GP_JITTER",
    "ODE_SETTINGS",
    "ark",
    "arma11",
    "diamonds",
    "logearn_interaction_z",
    "eight_schools_noncentered",
    "garch11",
    "gp_pois_regr",
    "hmm_example",
    "GaussianHMM",
    "lotka_volterra",
    "kidscore_interaction",
    "kilpisjarvi",
    "low_dim_gauss_mix",
    "logmesquite_logvas",
    "one_comp_mm_elim_abs",
    "blr",
]
