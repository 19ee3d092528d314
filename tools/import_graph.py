"""
The gateway's import graph, by concern: which folders (or top-level
modules) of C{gateway/} import which, and every import that runs against
the layering below (a lower concern importing a higher one).

    python tools/import_graph.py            # the graph and the arrows against it
    python tools/import_graph.py --modules  # module by module

Only imports at module level and inside functions of C{gateway/} are read
(with C{ast}; nothing is imported).  Imports under C{if TYPE_CHECKING:}
are not arrows: nothing runs through them; they let a lower concern's
type hints name what a higher one hands it (a configuration section, the
router).  They are counted and listed apart.  Exit status 1 when an arrow
runs against the layering, so that it can guard the layout.
"""

import argparse
import ast
import collections
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gateway")

#: Concerns from the bottom up: each may import those before it, never
#: those after it.  A module of gateway/ outside these is its own concern,
#: listed at the end (and reported, so that it is placed).
LAYERS = (
    "log",
    "cache",
    "xmpp",
    "names",
    "tls",
    "records",
    "posh",
    "verifiers",
    "s2s",
    "components",
    "ops",
    "app",
    "plugins",
    "testing",
    "ctl",
)


#: Imports that are not arrows of the design: the verifier registry reads
#: the plugin package to discover what is in it (as Twisted reads
#: C{twisted.plugins}), it calls nothing there.
DISCOVERY = {("gateway.verifiers.registry", "gateway.plugins")}


def modules():
    """
    Every module of the package: (dotted name, path).
    """
    for folder, _, files in os.walk(ROOT):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                relative = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                yield relative.removesuffix(".__init__"), path


def _type_checking(node):
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path, module, type_only=False):
    """
    The gateway modules that the module at C{path} imports: at run time,
    or (C{type_only}) only for type checking.
    """
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for_types = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.body:
                for inner in ast.walk(child):
                    for_types.add(id(inner))
    for node in ast.walk(tree):
        if (id(node) in for_types) != type_only:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("gateway"):
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            if name.startswith("gateway"):
                if name == "gateway":
                    for alias in node.names:
                        yield f"gateway.{alias.name}"
                else:
                    yield name


def concern(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "gateway"


def rank(name):
    return LAYERS.index(name) if name in LAYERS else len(LAYERS)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", action="store_true", help="module by module")
    options = parser.parse_args(argv)
    names = dict(modules())
    edges = collections.Counter()
    against = []
    type_only = sorted(
        (module, imported)
        for module, path in names.items()
        for imported in set(imports(path, module, type_only=True))
        if rank(concern(imported)) > rank(concern(module))
    )
    for module, path in sorted(names.items()):
        for imported in sorted(set(imports(path, module))):
            if imported not in names and imported.rpartition(".")[0] in names:
                imported = imported.rpartition(".")[0]  # "from gateway.x import name"
            source, target = concern(module), concern(imported)
            if options.modules:
                print(f"{module} -> {imported}")
            if source == target or target == "gateway":
                continue
            edges[source, target] += 1
            if (module, imported) in DISCOVERY:
                continue
            if rank(target) > rank(source) or target not in LAYERS or source not in LAYERS:
                against.append((module, imported))
    if not options.modules:
        concerns = sorted({c for pair in edges for c in pair}, key=lambda c: (rank(c), c))
        print(f"{len(names)} modules in {len({concern(m) for m in names})} concerns")
        for source in concerns:
            targets = [f"{t} ({edges[source, t]})" for t in concerns if edges[source, t]]
            print(f"  {source:<12} -> {', '.join(targets) if targets else '-'}")
    print(f"{len(type_only)} type-only references upward (under TYPE_CHECKING; not arrows)")
    if options.modules:
        for module, imported in type_only:
            print(f"  {module} -> {imported}")
    print(f"{len(against)} imports against the layering ({' < '.join(LAYERS)}):")
    for module, imported in against:
        print(f"  {module} -> {imported}")
    return 1 if against else 0


if __name__ == "__main__":
    sys.exit(main())
