"""The CIFAR unpickler against the gadgets people use: it runs no code, and still reads what
numpy and the real archives write. The mutation run drives these."""
from __future__ import annotations

import codecs
import contextlib
import copyreg
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clip_prompt_sweeps.errors import UserError
from trainables.data.sources.cifar import read_batch

ROOT = Path(__file__).resolve().parents[1]

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


def _python2_batch(rows: int, dtype_state_flags: int = 0) -> bytes:
    """{'data': uint8 rows x 3072, 'labels': [1, 2]} as Python 2's cPickle wrote the real archives:
    strings as SHORT_BINSTRING (read back as bytes), numpy.core's _reconstruct, the pixels as one
    string. `dtype_state_flags` is the last field of the dtype's state, 0 in every real file."""
    def s(b: bytes) -> bytes:
        return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<I", len(b))) + b
    raw = bytes(range(256)) * (rows * 3072 // 256)
    dtype = (b"cnumpy\ndtype\n" + s(b"u1") + b"\x89\x88\x87R(K\x03" + s(b"|")
             + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff" + b"J" + struct.pack("<i", dtype_state_flags) + b"tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + s(b"b") + b"\x87R"
             + b"(K\x01" + b"J" + struct.pack("<i", rows) + b"M\x00\x0c\x86" + dtype + b"\x89" + s(raw) + b"tb")
    return b"\x80\x02}(" + s(b"data") + array + s(b"labels") + b"](K\x01K\x02eu."


def test_the_unpickler_reads_a_batch_as_python2_numpy_wrote_the_real_archives(tmp_path):
    (tmp_path / "b").write_bytes(_python2_batch(2))
    batch = read_batch(tmp_path / "b")
    assert batch[b"labels"] == [1, 2] and type(batch[b"data"]) is np.ndarray
    assert batch[b"data"].dtype.str == "|u1" and batch[b"data"].shape == (2, 3072)
    assert batch[b"data"].ravel().tolist() == list(range(256)) * 24


@pytest.mark.parametrize("flags", [1, 0x3F])
def test_a_dtype_state_that_says_pixels_are_objects_is_refused(tmp_path, flags):
    """numpy's own dtype.__setstate__ takes these flags (1: an item holds an object reference)
    and then reads pixel bytes as object pointers: freeing the array raised "Internal error,
    `get_clear_loop` not set for the DType 'uint8'" in a CI run, and 0x3F broke the interpreter.
    Run in a child process, so that a reader that admits it cannot take the test run with it."""
    (tmp_path / "b").write_bytes(_python2_batch(2, flags))
    child = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom trainables.data.sources.cifar import read_batch\n"
         "from clip_prompt_sweeps.errors import UserError\n"
         "try:\n    read_batch(__import__('pathlib').Path(sys.argv[1]))\nexcept UserError as e:\n    print(e)\n",
         str(tmp_path / "b")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert child.returncode == 0 and child.stderr == "", child.stderr
    assert "is not a valid CIFAR batch (a dtype state that is not a plain number's)" in child.stdout


@pytest.mark.parametrize("payload,said", [
    (lambda: _Call(codecs.encode, "ab", "hex"), "_codecs.encode with 'hex' is not part of a CIFAR batch"),
    (lambda: _Call(np.dtype, "O"), "dtype 'O' is not one a CIFAR batch holds"),
    (lambda: _Call(np.dtype, "V8"), "dtype 'V8' is not one a CIFAR batch holds"),
    (lambda: _Call(np.ndarray, (10**6,)), "a call of numpy.ndarray is not how a CIFAR batch makes an array"),
    (lambda: np.dtype("u1"), "a dtype or an array type outside an array"),
    (lambda: np.array([1, "x"], dtype=object), "dtype 'O8' is not one a CIFAR batch holds"),
    (lambda: np.zeros((2, 2), np.uint8), None),
    # what the file names is shown short and escaped, however long a crafted file makes it
    (lambda: _Call(np.dtype, "\x1b[2J" + "x" * 10**6), "dtype '\\x1b[2Jxxxxx...xxxxxxxxxxxxx' is not one"),
    (lambda: _Call(codecs.encode, "ab", "y" * 10**6), "_codecs.encode with 'yyyyyyyyyyyy...yyyyyyyyyyyyy' is not part"),
])
def test_only_plain_arrays_and_latin1_bytes_are_built(tmp_path, payload, said):
    """The other ways a file could make numpy or a codec do more than a CIFAR batch needs."""
    (tmp_path / "b").write_bytes(pickle.dumps({b"data": payload()}, protocol=2))
    if said is None:
        assert read_batch(tmp_path / "b")[b"data"].tolist() == [[0, 0], [0, 0]]
        return
    with pytest.raises(UserError, match="is not a valid CIFAR batch") as err:
        read_batch(tmp_path / "b")
    assert said in str(err.value) and len(str(err.value)) < 400, str(err.value)[:400]
