"""Cronium runtime helpers for Python: file based, in $CRONIUM_JOB_DIR."""
import json
import os
import re

__all__ = ["input", "output", "event", "getVariable", "setVariable", "setCondition",
           "get_variable", "set_variable", "set_condition"]

_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


def _path(*parts):
    return os.path.join(os.environ.get("CRONIUM_JOB_DIR", "/cronium/job"), *parts)


def _check_key(key):
    if not isinstance(key, str) or not _KEY.match(key) or key in (".", ".."):
        raise ValueError("cronium: invalid variable key %r (allowed: A-Z a-z 0-9 _ . -)" % (key,))


def _read(*parts):
    with open(_path(*parts), encoding="utf-8") as f:
        return f.read()


def _write(text, *parts):
    with open(_path(*parts), "w", encoding="utf-8") as f:
        f.write(text)


def input():
    """The job's input, parsed from JSON."""
    return json.loads(_read("input.json"))


def event():
    """The event: {id, name, runId, jobId, attempt}."""
    return json.loads(_read("event.json"))


def output(value):
    """Sets the job's output (any JSON-serialisable value)."""
    _write(json.dumps(value), "output")


def getVariable(key):
    """A variable's value (set in this run, else from the snapshot), or None."""
    _check_key(key)
    for folder in ("variables-set", "variables"):
        try:
            return _read(folder, key)
        except FileNotFoundError:
            pass
    return None


def setVariable(key, value):
    """Sets a variable; non-strings are stored as JSON."""
    _check_key(key)
    _write(value if isinstance(value, str) else json.dumps(value), "variables-set", key)


def setCondition(value):
    """Sets the condition that workflow edges test."""
    if not isinstance(value, bool):
        raise TypeError("cronium: condition must be True or False")
    _write("true" if value else "false", "condition")


get_variable = getVariable
set_variable = setVariable
set_condition = setCondition
