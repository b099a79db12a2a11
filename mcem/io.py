"""Saving and loading fit results without pickle, and conversion to an ArviZ ``DataTree``.

The public face of the result file: :func:`save_result` and :func:`to_datatree` come from
:mod:`mcem.serial.resultfile` and :mod:`mcem.serial.datatree` (below :mod:`mcem.result`, which
uses them); :func:`load_result`, which builds a :class:`~mcem.FitResult`, lives here, above it.

File format (``"mcem-result/1"``)
---------------------------------
:func:`save_result` writes one ``.npz`` archive (:func:`numpy.savez_compressed`) that
:func:`numpy.load` opens with ``allow_pickle=False``:

* every array of the result is one entry: the final parameters (``params/<name>``), the latent
  draws of the last E step (``draws/<name>``, shape ``(chain, draw, *latent_shape)``), the stacked
  parameter paths of the history (``history/params/<name>``, shape ``(n_rows, *shape)``) and its
  numeric columns (``history/<column>``, one value per row); any other array or numpy scalar is
  an entry too. Names that are not plain ``[A-Za-z0-9_.-]`` get a generated key.
* the entry ``__meta__.json`` is a ``uint8`` array holding a UTF-8 JSON document with the format
  (``"format": "mcem-result"``, ``"version": "mcem-result/1"``), every scalar, string and setting,
  the history layout (columns, their types, rows lacking a value, each row's key order), the dtype
  and shape of every array entry, ``"lossy"``: the notes on values converted with ``repr``, and,
  when the result carries its model (a result of :func:`mcem.fit`), ``"model"``: the model's
  fingerprint (name, parameter and latent declarations, SHA-256 of the data; see
  :mod:`mcem.serial`), which :func:`load_result` compares with the ``model=`` it is given.

Values are stored exactly: Python ``bool``/``int``/``float``/``str``/``None``, lists, tuples,
dicts (any keys of these types) and non-object numpy arrays and scalars (dtype and shape kept) come
back equal and of the same type; a history column of Python bools comes back as Python bools.
Anything else (a function, an arbitrary object, an object array) cannot be stored without pickle:
:func:`save_result` stores its ``repr`` string instead, records a note in ``"lossy"`` naming where
it was (for example ``settings['sampler_options']['proposal']``) and issues a ``UserWarning``;
:func:`load_result` returns that string.

A file is written atomically (a temporary file ``.<name>.<12 hex digits>.tmp`` in the same
directory, flushed and fsynced, then ``os.replace``), so an interrupted save never leaves a
half-written result under the target name; a later save of the same file removes the temporary
files a killed save of it left behind.
:func:`load_result` checks the archive's CRCs, the format, the version and every array's dtype and
shape against the metadata, and raises ``ValueError`` naming the file and the problem rather than
return a wrong result.
"""

from __future__ import annotations

import os
import warnings

from .core import Model
from .result import FitResult
from .serial.datatree import to_datatree
from .serial.fingerprint import fingerprint_differences, model_fingerprint
from .serial.resultfile import FORMAT, VERSION, read_result, save_result
from .serial.resultfile import META_KEY  # noqa: F401 - the name of the description entry

__all__ = ["save_result", "load_result", "to_datatree", "FORMAT", "VERSION"]


def load_result(path, model=None) -> FitResult:
    """Read a result written by :func:`save_result`.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    model : Model, optional
        The fitted model, attached to the result (outside the dict, as :func:`mcem.fit` does) so
        that what needs it (``bse``, ``conf_int``, ``summary``, an estimate of ``llf``, ...)
        works; :meth:`~mcem.FitResult.attach` does the same later. Its parameters must match the
        saved ones (names and shapes), else ``ValueError``. Without a model the stored
        log-likelihood (``loglik``, ``loglik_mcse``) is still there: a file written before
        ``loglik_mcse`` existed holds the exact value under ``loglik`` (or None), read with
        ``loglik_mcse`` 0. When the file holds
        the fingerprint of the model that made it (results of :func:`mcem.fit`) and ``model``
        differs from it (name, declarations, data), a ``UserWarning`` says what differs.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is truncated or corrupted, is not an mcem result, or has another format
        version; the message names the file and the problem.
    """
    path = os.fsdecode(os.fspath(path))
    fields, meta = read_result(path)
    out = FitResult(fields)
    if model is not None:
        if not isinstance(model, Model):
            raise TypeError(f"load_result: model must be an mcem.Model, got {type(model).__name__}")
        try:
            model.check_theta(out.get("params"), "saved params")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: the result does not fit model {model.name!r}: {exc}") from exc
        if "model" in meta:
            try:
                diffs = fingerprint_differences(meta["model"], model_fingerprint(model), "the saved result")
            except ValueError as exc:
                diffs = [str(exc)]
            if diffs:
                warnings.warn(
                    f"load_result: model {model.name!r} is not the one that made the result in {path}: "
                    + "; ".join(diffs),
                    UserWarning,
                    stacklevel=2,
                )
        object.__setattr__(out, "_model", model)
    return out
