"""
The gateway's import graph, by concern: which folders (or top-level
modules) of C{gateway/} import which, and every import that runs against
the layering below (a lower concern importing a higher one).

    python tools/import_graph.py            # the graph and the arrows against it
    python tools/import_graph.py --modules  # module by module

Only imports at module level and inside functions of C{gateway/} are read
(with C{ast}; nothing is imported).  Imports under C{if TYPE_CHECKING:}
are not arrows: they name a type for the checker (a verifier's request
carries the policy from C{app.config}) and are never run.  Exit status 1
when an arrow runs against the layering, so that it can guard the layout.
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
    """
    Whether C{node} is C{if TYPE_CHECKING:} (or C{typing.TYPE_CHECKING}).
    """
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _run_time_nodes(tree):
    """
    Every node of C{tree}, as L{ast.walk} gives them, but for the bodies of
    C{if TYPE_CHECKING:} (their C{else} is run, so it is kept).
    """
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        if _type_checking(node):
            pending.extend(node.orelse)
        else:
            pending.extend(ast.iter_child_nodes(node))


def imports(path, module):
    """
    The gateway modules that the module at C{path} imports when it runs.
    """
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in _run_time_nodes(tree):
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
    print(f"{len(against)} imports against the layering ({' < '.join(LAYERS)}):")
    for module, imported in against:
        print(f"  {module} -> {imported}")
    return 1 if against else 0


if __name__ == "__main__":
    sys.exit(main())
