"""The import package: ``from initscope import Client`` and ``python -m initscope``."""

from __future__ import annotations

import subprocess
import sys

import initscope
import pytest
from initscope import client


def test_client_names_at_the_top() -> None:
    assert initscope.Client is client.Client
    assert initscope.AsyncClient is client.AsyncClient
    with pytest.raises(AttributeError, match="no attribute 'Missing'"):
        initscope.Missing


def test_the_package_alone_does_not_import_the_client() -> None:
    code = "import sys, initscope.engine.analysis; print('initscope.client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_python_m_initscope_is_the_server() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "initscope", "--help"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("usage: initscope serve")  # one server, one parser
