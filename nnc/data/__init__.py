"""The data layer: built-in data sets, csv / npz loaders, and fitting data to a model's input.

Modules: ``base`` (Dataset, DataInfo), ``labels`` (label maps), ``builtin``, ``tables`` (CSV),
``arrays`` (npz / npy), ``sources`` (load_source), ``inputs`` (predict inputs), ``checks`` (checks,
fitting, the validation split). Sources are declared once, in ``nnc.vocab.SOURCES``.

Every problem with a data file or a data-source value is an :class:`NncError` with a stable code,
the file's path, a line and column where there is one (1-based; for a CSV, ``line`` is the physical
line in the file and ``column`` the 1-based character column where the bad field starts), and a
hint. Nothing here ever unpickles: every ``np.load`` uses ``allow_pickle=False``, and arrays of
Python objects are refused, never loaded.

Built-in data (``dataset("NAME")``; no network, generated sets use fixed seeds that do not depend
on the training seed):

=========  ====================================  ==========================  ==================
name       x                                     y                           source
=========  ====================================  ==========================  ==================
and        (4, 2)  [[0,0],[0,1],[1,0],[1,1]]     (4,) int64 truth table      constant
or         (4, 2)  same                          (4,) int64                  constant
xor        (4, 2)  same                          (4,) int64                  constant
iris       (150, 4) cm                           (150,) int64, 3 classes     datasets/iris.csv
digits     (1797, 1, 8, 8) pixels 0..16 / 16     (1797,) int64, 10 classes   datasets/digits.csv.gz
spirals    (300, 2) three noisy spiral arms      (300,) int64, 3 classes     seed 231
sine       (1000, 20, 1) sin(w*t + phase)        (1000, 1) float, next value seed 7
=========  ====================================  ==========================  ==================

``spirals`` is the CS231n toy set: 100 points per class, radius 0..1, angle 4 radians per arm with
N(0, 0.2) noise. ``sine``: w ~ U(0.1, 0.5) radians per step, phase ~ U(0, 2*pi), t = 0..19 for x
and t = 20 for y. ``digits`` is shaped like the language reference says (images ``[1, 8, 8]``);
:func:`fit_to_input` reshapes it to ``[64]`` for a dense model. ``iris`` carries its class names
in ``Dataset.labels``.

Floating features are float32 unless ``float_dtype`` asks for float64; class ids are int64.

CSV rules (``csv("f.csv", target="col")``): a header row is required; the file is UTF-8 (a BOM is
skipped), comma-separated, with ``"``-quoted fields allowed; blank lines are skipped. Every
column other than the target is a numeric feature. The target becomes

* int64 class ids when every value is written as an integer (``3``, ``-1``; ``3.0`` is a float),
* floats when every value is a number,
* otherwise class ids by sorted unique label, with ``labels[id] == label``.

Without a ``target`` (a bare ``--data file.csv``) the last column is the target (the training
target column, when the source is loaded with a :class:`DataInfo` that names one).

Loaded with a :class:`DataInfo` (what the model was trained on), feature columns are matched by
name and string targets take the ids of its label map (contract 5.3); see :func:`load_source`.

Error codes:

====  ==========================================================================================
E701  unknown built-in data set name (with "did you mean")
E702  data file not found, a directory, unreadable, or of an unknown type
E703  malformed CSV: empty, no header row, ragged row, bad quoting, duplicate column, not UTF-8
E704  CSV target column missing (lists the columns, "did you mean")
E705  non-numeric feature value (line, column name, the value); non-numeric npz array
E706  missing value / hole in a CSV (empty field, ``NA``, ``N/A``, ``null``, ``None``, ``?``)
E707  npz key missing (lists the keys)
E708  npz / npy unreadable, not the expected format, or holding pickled Python objects
E709  bad data-source syntax (``--data`` value or source arguments)
E731  data does not fit the model input (shape, or non-integer token ids)
E732  x and y have different numbers of rows
E733  NaN or infinity in x or y
E734  no data (no rows, no features, or no training rows left after the validation split)
E735  a label the training data's label map lacks (or labels where training had numbers)
E736  CSV lacks a feature column the training data had (matched by name)
E737  CSV whose first, unnamed column is pandas' row index
E738  a run's data.json that cannot be read (raised by nnc.dataload)
====  ==========================================================================================
"""
from __future__ import annotations

from nnc.compiler.datasource import parse_source

from .base import BUILTIN_DATASETS, DataInfo, Dataset
from .checks import check_dataset, check_finite, fit_to_input, split_indices, split_validation
from .inputs import load_inputs
from .labels import encode_labels, label_targets, quoted_list
from .sources import load_source

__all__ = [
    "Dataset", "DataInfo", "BUILTIN_DATASETS", "load_source", "parse_source", "load_inputs", "fit_to_input",
    "split_validation", "split_indices", "check_dataset", "check_finite", "encode_labels", "label_targets", "quoted_list",
]
