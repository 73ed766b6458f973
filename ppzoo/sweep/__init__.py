"""``ppzoo.sweep``: run a study (a grid of fits over hyperparameters and seeds) locally or on Ray.

A study is a TOML file. It names a zoo model (or a custom task), the data set, the engine and its
options, the metrics, and a grid. Every point of the grid is one run: it loads the data, fits the model
with :func:`ppzoo.fit`, scores the fit, and writes its DataTree (``fit.nc``) and a one-row record
(``record.json``) into ``OUT/runs/<key>/``, each by writing a temporary file and renaming it, so a killed
run leaves nothing half-written. ``<key>`` is a stable hash of the run's settings: running the same study
again skips the finished runs and retries the failed ones. At the end the records are gathered into one
table (``OUT/results.csv``) and one HTML page (``OUT/report/index.html``).

Study file
----------
.. code-block:: toml

    [study]
    name = "ica_small"            # default: the file's stem
    model = "ica"                 # a zoo model (ppzoo models), or task = "file.py:function"
    engine = "svi"                # svi | nuts | blackjax
    metrics = ["recovery"]        # names in ppzoo.sweep.METRICS or "module:function" / "file.py:function"
    max_retries = 1               # a failing or killed run is tried again this many times
    num_cpus = 1                  # per run (Ray's resource request; local: workers = cores // num_cpus)
    num_gpus = 0                  # per run, Ray only
    timeout_s = 600               # optional: a run taking longer is stopped and counted as failed

    [data]                        # ppzoo.data.load(name, **the rest)
    name = "linear_ica"
    num_data = 500

    [model]                       # fixed fields of the model's config
    [engine]                      # fixed engine options
    steps = 1000

    [grid]                        # product of these lists
    seed = [0, 1, 2, 3, 4, 5]     # the fit's seed
    "data.noise_scale" = [0.05, 0.1, 0.2, 0.4]

    [[grid.zip]]                  # lists of equal length, zipped, then crossed with the product
    "engine.steps" = [500, 1000]
    "engine.learning_rate" = [0.02, 0.01]

    [output]
    datatree = true               # write each run's DataTree
    predictive_draws = 50         # posterior-predictive and prior draws kept in it
    prior_draws = 50

Grid keys are ``seed``, ``data.<loader argument>``, ``model.<config field>`` and
``engine.<engine option>``. Every key, name and value is checked before any run starts; an unknown one is
an error that names it and lists the valid ones, and nothing is written.

A case study (``case_study = "ica"`` instead of ``model``) is run as ``ppzoo run NAME`` would run it: its
command-line options go under ``[args]`` (``num_data = 200`` for ``--num-data 200``; grid keys
``args.<option>``), ``seed`` becomes ``--seed``, its report folder is kept as ``runs/<key>/report/`` and the
numeric columns of its ``metrics.csv`` become the record's metrics, one per fit (``svi.mcc_pearson``).

A custom task (``task = "file.py:function"``, the path relative to the study file, or
``"package.module:function"``) is called as ``function(settings, seed=seed)`` with
``settings = {"data": {...}, "model": {...}, "engine": {...}}`` and returns a dict of metrics.

A metric is ``function(fit, dataset) -> dict[str, float]``; built in: ``recovery`` (MCC of the sources,
Amari distance of the mixing, RMSE and 90% coverage of other true sites), ``identifiability`` (MCC and
Amari only), ``disentanglement`` (MIG, DCI, SAP and Gaussian total correlation of a VAE's encoder means
against the data set's true factors) and ``diagnostics`` (largest r_hat, smallest bulk ESS, divergences).
Every record also holds the fit's timings, warnings and final SVI loss.

Backends
--------
``local``: a pool of worker processes started with ``spawn`` (JAX is not fork-safe), sized to the
machine; a worker that dies is replaced and only its run is counted as failed. ``ray``: each run is a Ray
task with ``num_cpus``/``num_gpus``; ``ray.init(address=...)`` connects to a cluster, or starts a local
instance when no address is given. Ray is the optional extra ``pip install "ppzoo[ray]"``.

Modules: :mod:`~ppzoo.sweep.study` (study files, grids, validation), :mod:`~ppzoo.sweep.metrics` (built-in
metrics), :mod:`~ppzoo.sweep.run` (one run and its folder; the table), :mod:`~ppzoo.sweep.backends` (local
processes, Ray), :mod:`~ppzoo.sweep.scheduler` (``run_study``), :mod:`~ppzoo.sweep.page` (the HTML page),
:mod:`~ppzoo.sweep.files` (atomic writes).
"""

from ppzoo.sweep.backends import BACKENDS, check_ray_address
from ppzoo.sweep.metrics import DEFAULT_METRICS, METRICS
from ppzoo.sweep.run import RUN_COLUMNS, execute_run, gather
from ppzoo.sweep.scheduler import SweepResult, run_study
from ppzoo.sweep.study import RunSpec, Study, StudyError, expand, load_study, parse_study

__all__ = [
    "check_ray_address",
    "gather",
    "Study",
    "RunSpec",
    "StudyError",
    "SweepResult",
    "METRICS",
    "DEFAULT_METRICS",
    "BACKENDS",
    "RUN_COLUMNS",
    "load_study",
    "parse_study",
    "expand",
    "run_study",
    "execute_run",
]
