"""Pytest plugin: one test per rule and check for an adopter's adapter.

Installed with fusion-spec, the plugin registers itself (the ``pytest11`` entry
point ``fusion_spec.conformance.pytest_plugin``); ``-p fusion_spec.conformance.pytest_plugin``
loads it where the package is only on ``PYTHONPATH``. Usage, from the adopter's repository::

    pytest --fusion-adapter=my_pkg.adapter:MyAdapter --fusion-only
    pytest --fusion-adapter=... --fusion-include='shomr/*' \\
        --fusion-exclude='*/distribution/*' --fusion-xfail=conformance-xfail.txt
    pytest --fusion-adapter=keras --fusion-device=cuda --fusion-only

``--fusion-only`` collects nothing but the conformance items, so the command
works the same from any directory: without it, pytest also collects the
project's own tests (``testpaths`` of the repository you run it in).
``--fusion-adapter`` also takes the bundled names (``reference``, ``torch``,
``keras``). ``--fusion-device`` (``cpu``/``cuda``) and ``--fusion-precision``
(``float32``, ``tensorfloat32``, ``bfloat16``, ``bfloat16-autocast``) are passed to
the adapter as ``device=`` and ``precision=`` when given (the bundled torch and
Keras adapters take them; for Keras the device's environment is set before Keras
is imported).

Each check becomes the item ``conformance[rule/category/name]``: it fails with
the suite's message, is skipped with the adapter's reason when not applicable,
and is marked ``xfail`` (with the reason) when the expected-failures file names
it. Boundary cases fail unless expected (they must be looked at). Without
``--fusion-adapter`` the plugin adds nothing.
"""

from __future__ import annotations

import os

import pytest

from . import xfail
from .adapter import load_adapter
from .adapters import BUNDLED, DEVICES, PRECISIONS, device_env
from .runner import DEFAULT_TIMEOUT, run_check_within
from .suite import Check, all_checks, select


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fusion-conformance", "fusion-spec conformance suite")
    group.addoption("--fusion-adapter", metavar="module:Adapter", help="the adapter to judge")
    group.addoption(
        "--fusion-include",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only checks whose id rule/category/name matches (repeatable)",
    )
    group.addoption(
        "--fusion-exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="skip checks whose id matches (repeatable)",
    )
    group.addoption("--fusion-xfail", metavar="FILE", help="expected-failures file")
    group.addoption(
        "--fusion-only",
        action="store_true",
        help="collect only the conformance items (not the project's own tests)",
    )
    group.addoption(
        "--fusion-device", choices=DEVICES, help="device= for the adapter (bundled: cpu, cuda)"
    )
    group.addoption(
        "--fusion-precision",
        choices=PRECISIONS,
        help="precision= for the adapter (float32, or the TF32 opt-in tensorfloat32)",
    )
    group.addoption(
        "--fusion-timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="seconds each check may run before it fails 'timed out after N s' and is "
        "abandoned (0: no limit; default: %(default)g)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Loads the adapter and the expected-failures file once, before collection: a bad
    ``--fusion-*`` argument is a usage error (one line, exit code 4), not an internal one."""
    target = config.getoption("--fusion-adapter")
    if not target:
        return
    timeout = config.getoption("--fusion-timeout")
    if not timeout >= 0:
        raise pytest.UsageError(
            f"--fusion-timeout expected a number of seconds >= 0 (0: no limit); received {timeout}"
        )
    settings = {
        key: value
        for key, value in (
            ("device", config.getoption("--fusion-device")),
            ("precision", config.getoption("--fusion-precision")),
        )
        if value is not None
    }
    if target in ("keras", BUNDLED["keras"]) and "device" in settings:
        os.environ.update(device_env(settings["device"]))
    try:
        adapter = load_adapter(BUNDLED.get(target, target), **settings)
    except Exception as e:  # noqa: BLE001 (any failure to make it is the user's argument)
        first = (str(e).splitlines() or [""])[0]
        unknown = ":" not in target and target not in BUNDLED
        bundled = f"; bundled: {', '.join(BUNDLED)}" if unknown else ""
        raise pytest.UsageError(
            f"--fusion-adapter {target!r}: cannot load the adapter "
            f"({type(e).__name__}: {first}){bundled}"
        ) from None
    path = config.getoption("--fusion-xfail")
    try:
        expected = xfail.load(path) if path else []
    except OSError as e:
        raise pytest.UsageError(
            f"--fusion-xfail {path}: cannot read the expected-failures file ({e.strerror or e})"
        ) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise pytest.UsageError(f"--fusion-xfail {e}") from None
    config.stash[_STATE] = (adapter, expected, timeout or None)


_STATE = pytest.StashKey[tuple]()


def pytest_ignore_collect(collection_path, config: pytest.Config) -> bool | None:
    """With ``--fusion-only``, no file is collected: the items come from the suite alone."""
    if config.getoption("--fusion-only") and config.getoption("--fusion-adapter"):
        return True
    return None


class ConformanceItem(pytest.Item):
    """One check of the suite on the configured adapter."""

    def __init__(self, *, check: Check, adapter, timeout: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.check = check
        self.adapter = adapter
        self.timeout = timeout

    def runtest(self) -> None:
        outcome = run_check_within(self.adapter, self.check, self.timeout)
        if outcome.status == "n/a":
            pytest.skip(f"not applicable: {outcome.message}")
        if outcome.status != "pass":
            raise ConformanceFailure(f"{outcome.status}: {outcome.message}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ConformanceFailure):
            return f"{self.adapter.name} {self.check.id}\n{excinfo.value}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"conformance[{self.check.id}]"


class ConformanceFailure(AssertionError):
    """A check that did not pass; its message is the suite's."""


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items) -> None:
    if _STATE not in config.stash:
        return
    adapter, expected, timeout = config.stash[_STATE]
    checks = select(
        all_checks(), config.getoption("--fusion-include"), config.getoption("--fusion-exclude")
    )
    for check in checks:
        item = ConformanceItem.from_parent(
            session,
            name=f"conformance[{check.id}]",
            check=check,
            adapter=adapter,
            timeout=timeout,
        )
        entry = next((e for e in expected if e.matches(adapter.name, check.id)), None)
        if entry is not None:
            item.add_marker(pytest.mark.xfail(reason=entry.reason, strict=False))
        items.append(item)
