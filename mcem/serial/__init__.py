"""The package's files: one serializer for saved results and checkpoints.

Modules, from the bottom up:

* :mod:`mcem.serial.atomic`: the one atomic writer (temporary file, fsync, rename) and the
  removal of what a killed writer left.
* :mod:`mcem.serial.fingerprint`: model fingerprints (name, declarations, SHA-256 of the data),
  which both formats store in place of the model.
* :mod:`mcem.serial.allowlist`: the one allow-list of types a file may rebuild (mcem's
  chain states, numpy's bit generators).
* :mod:`mcem.serial.spelling`, :mod:`mcem.serial.table`, :mod:`mcem.serial.codec`: the one
  encoder/decoder of nested values into JSON nodes plus arrays; each format keeps its spelling of
  the nodes.
* :mod:`mcem.serial.archive`: the ``.npz`` container with a JSON description entry.
* :mod:`mcem.serial.resultfile`: the result file (format ``"mcem-result/1"``, :mod:`mcem.io`);
  :mod:`mcem.serial.datatree`: conversion of a result to an ``xarray.DataTree``.

The checkpoint file (main file and history chunks) is :mod:`mcem.checkpoint`. Importing this
package gives the fingerprint and atomic-write functions.
"""

from .atomic import TMP_PREFIX, fsync_directory, remove_leftovers, temp_name, write_atomic
from .fingerprint import FINGERPRINT_VERSION, data_fingerprint, fingerprint_differences, model_fingerprint

__all__ = [
    "model_fingerprint",
    "fingerprint_differences",
    "data_fingerprint",
    "write_atomic",
    "remove_leftovers",
    "fsync_directory",
    "temp_name",
    "TMP_PREFIX",
    "FINGERPRINT_VERSION",
]
