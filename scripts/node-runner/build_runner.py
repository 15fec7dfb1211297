#!/usr/bin/env python3
"""Builds the node runner into the one file a node runs: dist/campaign-runner.py.

    python3 scripts/node-runner/build_runner.py           write dist/campaign-runner.py
    python3 scripts/node-runner/build_runner.py --check   exit 1 when dist/campaign-runner.py is stale

The file is plain text: a `#!/usr/bin/python3 -I` line, the package's sources and contract.json as string
literals (sorted, no timestamps, so equal sources give equal bytes and an equal sha256), and a small importer
that serves them. Text rather than a zip keeps every delivery path as it is: inline gzip+base64 in the user data,
an S3 object uploaded from a string, `sha256sum --check` at boot. -I (isolated mode) keeps the AMI's conda
environments and PYTHON* variables out. The tests, the rehearsal and the nodes all run this same file.
"""
from __future__ import annotations

import hashlib
import os
import sys
from typing import Dict

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "campaign_runner"
OUTPUT = os.path.join(HERE, "dist", "campaign-runner.py")

BOOTSTRAP = '''
import importlib.abc
import importlib.util
import sys


class _Bundled(importlib.abc.MetaPathFinder, importlib.abc.InspectLoader):
    """Serves the package from FILES: modules by name, data files through get_data (pkgutil.get_data)."""

    def _path(self, fullname):
        base = fullname.replace(".", "/")
        if base + "/__init__.py" in FILES:
            return base + "/__init__.py", True
        if base + ".py" in FILES:
            return base + ".py", False
        return None, False

    def find_spec(self, fullname, path=None, target=None):
        name, package = self._path(fullname)
        if name is None:
            return None
        spec = importlib.util.spec_from_loader(fullname, self, origin="<bundle>/" + name, is_package=package)
        spec.has_location = True
        if package:
            spec.submodule_search_locations = ["<bundle>/" + fullname.replace(".", "/")]
        return spec

    def get_source(self, fullname):
        return FILES[self._path(fullname)[0]]

    def get_filename(self, fullname):
        return "<bundle>/" + self._path(fullname)[0]

    def get_code(self, fullname):
        return compile(self.get_source(fullname), self.get_filename(fullname), "exec", dont_inherit=True)

    def exec_module(self, module):
        exec(self.get_code(module.__name__), module.__dict__)

    def get_data(self, path):
        key = path[len("<bundle>/"):] if path.startswith("<bundle>/") else path
        if key not in FILES:
            raise FileNotFoundError(path)
        return FILES[key].encode("utf-8")


sys.meta_path.insert(0, _Bundled())

if __name__ == "__main__":
    from campaign_runner.main import main

    sys.exit(main(sys.argv[1:]))
'''


def sources() -> Dict[str, str]:
    """Every file of the package (contract.json through its link), by bundle path."""
    files: Dict[str, str] = {}
    root = os.path.join(HERE, PACKAGE)
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name.endswith(".py") or name == "contract.json":
            with open(path, encoding="utf-8") as f:
                files["%s/%s" % (PACKAGE, name)] = f.read()
    if "%s/contract.json" % PACKAGE not in files:
        raise SystemExit("build_runner: %s/contract.json is missing (run `npx tsx scripts/gen-schemas.ts`)" % PACKAGE)
    return files


def build() -> str:
    files = sources()
    digest = hashlib.sha256("".join(k + "\0" + v + "\0" for k, v in sorted(files.items())).encode("utf-8")).hexdigest()
    lines = [
        "#!/usr/bin/python3 -I",
        "# The campaign node runner, built by scripts/node-runner/build_runner.py from scripts/node-runner/%s/." % PACKAGE,
        "# Generated: do not edit. Sources sha256 %s." % digest,
        "FILES = {",
    ]
    lines += ["    %r: %r," % (name, text) for name, text in sorted(files.items())]
    lines += ["}", BOOTSTRAP.lstrip("\n")]
    return "\n".join(lines)


def main(argv: list) -> int:
    text = build()
    if argv == ["--check"]:
        try:
            with open(OUTPUT, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = ""
        if current != text:
            sys.stderr.write("%s is stale: run `python3 scripts/node-runner/build_runner.py`\n" % os.path.relpath(OUTPUT))
            return 1
        return 0
    if argv:
        sys.stderr.write(__doc__)
        return 2
    os.makedirs(os.path.dirname(OUTPUT), exist_ok=True)
    tmp = OUTPUT + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, OUTPUT)
    print("%s: %d bytes, sha256 %s" % (os.path.relpath(OUTPUT), len(text.encode()), hashlib.sha256(text.encode()).hexdigest()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
