"""The converters' and runtimes' own output is held back while they work, and shown only when they crash."""
from __future__ import annotations

import os

import pytest

from pocketbert.errors import PocketbertError, native_chatter_held_back


def test_native_output_is_held_back_on_success(capfd):
    with native_chatter_held_back():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(1, b"quantizer: 12 ops\n")
    print("wrote OUT")
    out, err = capfd.readouterr()
    assert "XNNPACK" not in err and "quantizer" not in out and out == "wrote OUT\n"


def test_native_output_is_shown_when_the_work_crashes(capfd):
    with pytest.raises(RuntimeError):
        with native_chatter_held_back():
            os.write(2, b"converter: unsupported op FOO\n")
            raise RuntimeError("boom")
    assert "unsupported op FOO" in capfd.readouterr().err


def test_our_own_refusals_stay_one_line(capfd):
    with pytest.raises(PocketbertError):
        with native_chatter_held_back():
            os.write(2, b"converter chatter\n")
            raise PocketbertError("one line")
    assert "converter chatter" not in capfd.readouterr().err
