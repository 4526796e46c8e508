#!/usr/bin/env python3
"""Package a module directory as a ZIP (deterministic order, no directories
entries, no __pycache__). Usage: mkzip.py SRC_DIR OUT.zip [EXTRA_DIR ...]

Each EXTRA_DIR is added under its own name at the root of the ZIP (e.g.
modules-sdk/python/modcore_sdk -> modcore_sdk/...), so a module can vendor a library."""
import os
import sys
import zipfile


def add_tree(z, src, prefix):
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for f in sorted(files):
            if f.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(root, f)
            rel = os.path.join(prefix, os.path.relpath(path, src)) if prefix else \
                os.path.relpath(path, src)
            info = zipfile.ZipInfo(rel, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (os.stat(path).st_mode & 0o777) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as fh:
                z.writestr(info, fh.read())


src, out, extras = sys.argv[1], sys.argv[2], sys.argv[3:]
os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
tmp = out + ".tmp"
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
    add_tree(z, src, "")
    for extra in extras:
        add_tree(z, extra, os.path.basename(os.path.normpath(extra)))
os.replace(tmp, out)
