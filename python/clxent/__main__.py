"""python -m clxent devices | demo | check | bench [options]: the clxent command.

The C command itself runs, with the same arguments, output and exit status (0 success, 1 wrong
results, 2 bad usage, 3 the device, the library or memory failed): the one bundled in this package
by `pip install ./python` (beside the bundled libclxent.so.1, which it loads), else, in a source
tree, the build/clxent that CMake built. `python -m clxent --help` lists the commands.
"""
import os
import sys


def command():
    """The path of the clxent command this package runs, or None."""
    import clxent  # its folders: one, or for an editable install also the one in site-packages
    here = os.path.dirname(os.path.abspath(__file__))
    bundled = [os.path.join(d, "clxent") for d in getattr(clxent, "__path__", [here])]
    for path in (*bundled, os.path.join(here, "..", "..", "build", "clxent")):
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.normpath(path)
    return None


def main():
    exe = command()
    if exe is None:
        print("clxent: no clxent command beside this package: install it with `pip install ./python` "
              "(which builds and bundles it), or build the source tree (cmake) into build/", file=sys.stderr)
        return 3
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(exe, ["clxent", *sys.argv[1:]])  # replaces this process: the exit status is the command's


if __name__ == "__main__":
    sys.exit(main())
