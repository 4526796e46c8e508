"""Module CLI commands (blvm RegisterCliSpec).

A module declares subcommands with @module.cli_command(name, about=, args=[Arg(...)]).
At start the SDK registers the spec with the core (POST /api/v1/cli/spec); the operator
runs them through the core (`modctl`), which POSTs a signed {"subcommand", "args"} to
the module's /cli and gets back {"exit_code", "stdout", "stderr"}.

What a handler prints is captured per thread (sys.stdout/sys.stderr are replaced once by
a proxy that writes to the invoking thread's buffer, and to the real stream for every
other thread), so concurrent invocations and the module's own logging do not mix."""

import io
import re
import sys
import threading
import traceback

MAX_OUTPUT = 1024 * 1024
_NAME_RE = re.compile(r"[a-z0-9_-]{1,32}")


class Arg:
    """One argument of a subcommand (the RegisterCliSpec arg fields).

    name: the key in the invocation's "args" and the handler's keyword (with "-" as "_"),
          1..32 characters of a-z 0-9 _ -;
    long_name: --long (defaults to name); short_name: -s (one letter or digit, or None);
    required; takes_value (False: a flag, passed as a bool); default (sent to the core as
    a string); help."""

    def __init__(self, name, long_name=None, short_name=None, required=False,
                 takes_value=True, default=None, help=None):
        if not name:
            raise ValueError("an Arg needs a name")
        for label, value in (("name", name), ("long_name", long_name)):
            if value is not None and not _NAME_RE.fullmatch(str(value)):
                raise ValueError(f"Arg {label} {value!r}: 1..32 characters of a-z 0-9 _ -")
        if short_name is not None and not (len(short_name) == 1 and short_name.isalnum()):
            raise ValueError(f"Arg short_name {short_name!r}: one letter or digit")
        self.name = name
        self.long_name = long_name if long_name is not None else name
        self.short_name = short_name
        self.required = bool(required)
        self.takes_value = bool(takes_value)
        self.default = default
        self.help = help

    @property
    def keyword(self):
        return self.name.replace("-", "_")

    def spec(self):
        # The core keeps defaults as strings (it fills them in before invoking).
        default = None if self.default is None or not self.takes_value else str(self.default)
        return {"name": self.name, "long_name": self.long_name, "short_name": self.short_name,
                "required": self.required, "takes_value": self.takes_value,
                "default": default, "help": self.help}

    def __repr__(self):
        return f"Arg({self.name!r})"


class Command:
    def __init__(self, name, handler, about="", args=()):
        self.name = name
        self.handler = handler
        self.about = about or (handler.__doc__ or "").strip().split("\n")[0]
        self.args = list(args)

    def spec(self):
        return {"name": self.name, "about": self.about, "args": [a.spec() for a in self.args]}


class UsageError(Exception):
    pass


def _flag(value):
    if isinstance(value, bool):
        return value
    if value is None:
        return True
    return str(value).strip().lower() in ("", "1", "true", "yes", "on")


def bind_args(command, given):
    """The handler's keyword arguments for an invocation's "args" (a dict whose keys are
    arg names, long names or short names). Raises UsageError."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise UsageError('"args" must be an object of name: value')
    by_key = {}
    for arg in command.args:
        for key in (arg.name, arg.long_name, arg.short_name):
            if key:
                by_key.setdefault(key, arg)
    kwargs, seen = {}, set()
    for key, value in given.items():
        arg = by_key.get(key)
        if arg is None:
            known = ", ".join(a.name for a in command.args) or "none"
            raise UsageError(f"{command.name}: unknown argument {key!r} (arguments: {known})")
        if arg.name in seen:
            raise UsageError(f"{command.name}: argument {arg.name!r} given twice")
        seen.add(arg.name)
        if not arg.takes_value:
            value = _flag(value)
        elif value is not None and not isinstance(value, (str, int, float, bool, list)):
            raise UsageError(f"{command.name}: argument {arg.name!r} must be a plain value")
        kwargs[arg.keyword] = value
    for arg in command.args:
        if arg.name in seen:
            continue
        if arg.required:
            raise UsageError(f"{command.name}: missing required argument --{arg.long_name}")
        kwargs[arg.keyword] = arg.default if arg.takes_value else bool(arg.default)
    return kwargs


# --- per-thread capture of stdout / stderr ----------------------------------------------

_local = threading.local()
_install_lock = threading.Lock()


class _ThreadStream:
    """Writes to the current thread's capture buffer if it has one, else to the real
    stream."""

    def __init__(self, real, attr):
        self._real = real
        self._attr = attr

    def _target(self):
        return getattr(_local, self._attr, None) or self._real

    def write(self, text):
        return self._target().write(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        target = self._target()
        if target is not None:
            target.flush()

    def __getattr__(self, name):
        return getattr(self._real, name)


def _install():
    with _install_lock:
        if not isinstance(sys.stdout, _ThreadStream):
            sys.stdout = _ThreadStream(sys.stdout, "stdout")
        if not isinstance(sys.stderr, _ThreadStream):
            sys.stderr = _ThreadStream(sys.stderr, "stderr")


def _cap(text):
    if len(text) > MAX_OUTPUT:
        return text[:MAX_OUTPUT] + "\n[output truncated]\n"
    return text


def invoke(command, given):
    """Runs command with the invocation's args. Returns (exit_code, stdout, stderr)."""
    _install()
    out, err = io.StringIO(), io.StringIO()
    _local.stdout, _local.stderr = out, err
    try:
        try:
            kwargs = bind_args(command, given)
        except UsageError as e:
            err.write(f"{e}\n")
            return 2, out.getvalue(), err.getvalue()
        try:
            result = command.handler(**kwargs)
            if isinstance(result, bool):
                code = 0 if result else 1
            elif isinstance(result, int):
                code = result
            else:
                if isinstance(result, str):
                    out.write(result if result.endswith("\n") else result + "\n")
                code = 0
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                err.write(f"{e.code}\n")
                code = 1
        except Exception:
            err.write(traceback.format_exc())
            code = 1
        return code, _cap(out.getvalue()), _cap(err.getvalue())
    finally:
        _local.stdout = _local.stderr = None
