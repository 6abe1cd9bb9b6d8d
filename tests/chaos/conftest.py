"""Chaos tests print their figures at the end of the run, even without `-s`."""

from __future__ import annotations

from typing import Any

import pytest

_FIGURES: list[tuple[str, dict[str, Any]]] = []


@pytest.fixture
def report_figures(request: pytest.FixtureRequest) -> Any:
    def record(figures: dict[str, Any]) -> None:
        _FIGURES.append((request.node.name, figures))
    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("chaos figures")
    for name, figures in _FIGURES:
        terminalreporter.write_line(name)
        for key, value in figures.items():
            terminalreporter.write_line(f"  {key}: {value}")
