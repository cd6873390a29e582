"""The CIFAR unpickler against the gadgets people use: it runs no code, and still reads what
numpy and the real archives write. The mutation run drives these."""
from __future__ import annotations

import contextlib
import copyreg
import pickle
import subprocess

import numpy as np
import pytest
import torch

from clip_prompt_sweeps.errors import UserError
from trainables.data.sources.cifar import read_batch

# --- the CIFAR unpickler against the gadgets people use ---------------------------------------


class _Call:
    """Pickles as a call of `fn(*args)`, the way an attacker's file would."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@contextlib.contextmanager
def _system_as_extension():
    """os.system registered as copyreg extension code 0xF0, for as long as the block runs."""
    copyreg.add_extension("posix", "system", 0xF0)
    try:
        yield
    finally:
        copyreg.remove_extension("posix", "system", 0xF0)


def _gadgets(marker) -> dict[str, bytes]:
    import builtins
    import importlib
    import os

    import numpy.testing._private.utils as np_utils
    touch = f"open({str(marker)!r}, 'w').close()"
    batch = lambda payload: pickle.dumps({b"data": payload, b"labels": []}, protocol=2)
    gadgets = {
        "os.system": batch(_Call(os.system, f"touch {marker}")),
        "subprocess.Popen": batch(_Call(subprocess.Popen, ["touch", str(marker)])),
        "subprocess.check_call": batch(_Call(subprocess.check_call, ["touch", str(marker)])),
        "builtins.eval": batch(_Call(builtins.eval, touch)),
        "builtins.exec": batch(_Call(builtins.exec, touch)),
        "builtins.getattr": batch(_Call(builtins.getattr, _Call(importlib.import_module, "os"), "system")),
        "numpy.testing runstring": batch(_Call(np_utils.runstring, touch, {})),
        "numpy.load allow_pickle": batch(_Call(np.load, str(marker), "r", True)),
        "torch.load": batch(_Call(torch.load, str(marker))),
        "numpy.frombuffer": batch(_Call(np.frombuffer, b"\0" * 8)),
        # an allowed outer call whose argument is a forbidden one
        "nested reduce": batch(_Call(np._core.multiarray._reconstruct, _Call(os.system, f"touch {marker}"),
                                     (0,), b"b")),
        # copyreg's helper that pickles old-style objects builds any class it is given
        "copyreg._reconstructor": batch(_Call(copyreg._reconstructor, subprocess.Popen, object, None)),
    }
    # a global reached through copyreg's extension registry (EXT1) instead of by name
    with _system_as_extension():
        gadgets["copyreg extension"] = batch(_Call(os.system, f"touch {marker}"))
    assert b"\x82\xf0" in gadgets["copyreg extension"]       # EXT1 0xF0: no module name in the file
    return gadgets


def test_the_cifar_unpickler_refuses_every_known_gadget(tmp_path):
    marker = tmp_path / "ran"
    for name, payload in _gadgets(marker).items():
        path = tmp_path / "data_batch_1"
        path.write_bytes(payload)
        # the extension registered in the reading process too, as an attacker would need it
        with _system_as_extension() if name == "copyreg extension" else contextlib.nullcontext():
            with pytest.raises(UserError, match="not a valid CIFAR batch") as err:
                read_batch(path)
        assert "not part of a CIFAR batch" in str(err.value) or "not how a CIFAR batch starts" in str(err.value), name
        assert not marker.exists(), f"{name} ran code"


def test_the_unpickler_still_reads_what_numpy_writes(tmp_path):
    """The refusals above are not a reader that refuses everything: a real batch, as written by
    Python 3 pickling numpy (protocol 2, as the CIFAR archives are), reads back."""
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    (tmp_path / "b").write_bytes(pickle.dumps({b"data": data, b"labels": [3, 4]}, protocol=2))
    batch = read_batch(tmp_path / "b")
    assert np.array_equal(batch[b"data"], data) and batch[b"labels"] == [3, 4]


def test_the_unpickler_admits_only_the_empty_start_of_a_plain_array(tmp_path):
    """numpy's _reconstruct is allowed, for the empty array a real pickle starts with: any other
    shape (which would allocate what the file asks for) or type is refused; so is a file
    over the size limit, by one byte, and a batch that is not a dict."""
    reconstruct = np._core.multiarray._reconstruct
    for name, payload in (("huge", _Call(reconstruct, np.ndarray, (10**6,), b"b")),
                          ("list shape", _Call(reconstruct, np.ndarray, [0], b"b")),
                          ("not an array", _Call(reconstruct, np.dtype, (0,), b"b"))):
        (tmp_path / name).write_bytes(pickle.dumps({b"data": payload}, protocol=2))
        with pytest.raises(UserError, match=r"is not how a CIFAR batch starts one\); delete it and run "
                                            r"`python -m orchestrator fetch` to download it again"):
            read_batch(tmp_path / name)
    (tmp_path / "list").write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(UserError, match=r"list is not a valid CIFAR batch \(a list, not a dict\); delete it"):
        read_batch(tmp_path / "list")
    ok = pickle.dumps({b"labels": [1]}, protocol=2)
    (tmp_path / "ok").write_bytes(ok)
    assert read_batch(tmp_path / "ok", max_bytes=len(ok)) == {b"labels": [1]}
    with pytest.raises(UserError, match=f"{len(ok):,} bytes, more than the real file's {len(ok) - 1:,}"):
        read_batch(tmp_path / "ok", max_bytes=len(ok) - 1)


def test_the_unpickler_reads_python2_strings_as_bytes_as_the_cifar_archives_hold_them(tmp_path):
    # {'data': 1} as Python 2 wrote it (SHORT_BINSTRING), as in the real archives' batches
    (tmp_path / "py2").write_bytes(b"\x80\x02}q\x00U\x04dataq\x01K\x01s.")
    assert read_batch(tmp_path / "py2") == {b"data": 1}
