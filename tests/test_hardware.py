"""hardware: what the machine has, decided as cheaply as it can be."""
from __future__ import annotations

import sys

from dataselect.hardware import no_gpu_without_torch


def test_no_gpu_is_decided_without_torch_only_when_no_gpu_device_node_exists(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert no_gpu_without_torch([str(tmp_path / "nvidia[0-9]*")])
    (tmp_path / "nvidia0").touch()
    assert not no_gpu_without_torch([str(tmp_path / "nvidia[0-9]*")])  # a driver's node: torch must be asked


def test_once_torch_is_loaded_it_is_asked(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", object())
    assert not no_gpu_without_torch([str(tmp_path / "nvidia[0-9]*")])
