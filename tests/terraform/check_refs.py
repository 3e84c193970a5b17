"""Every reference in a Terraform directory names something declared there.

In each directory under the given root that holds .tf files, every
var.NAME must be a declared variable, local.NAME a declared local,
module.NAME a declared module call (and module.NAME.OUTPUT an output of a
module whose source is a local directory), data.TYPE.NAME a declared data
source and TYPE.NAME a declared resource, for TYPE of the AWS provider
(aws_...) or any type the directory declares. The arguments of a call to a
local module must be variables of that module, and its variables without a
default must be given. References are read from the parsed expressions,
interpolations and heredoc templates included; text in strings outside
${...} is not a reference and is not read.

What it cannot know without the provider's schema: whether an argument or an
attribute of a resource exists. terraform validate checks those.

Usage: python check_refs.py DIR  (prints one line per problem; exit 1 if any)
"""

import os
import re
import sys

import hcl2
from lark import Token, Tree

from hcl_eval import _label, _name, _trees

# Names that start a reference but are not declared by a block.
BUILTIN_ROOTS = {"each", "count", "self", "path", "terraform"}
# Arguments of a module call that are not the module's variables.
META_ARGUMENTS = {"source", "version", "providers", "count", "for_each", "depends_on"}
ACCESSORS = {"get_attr_expr_term", "index_expr_term", "full_splat_expr_term", "attr_splat_expr_term"}


class Ref:
    def __init__(self, root, line):
        self.root, self.names, self.line, self.complete, self.inner = root, [], line, True, []


def _ref(node):
    """The reference an accessor chain starts with (its root name and the
    attribute names up to the first index or splat), or None when the chain
    does not start with a name (e.g. a function's result)."""
    if node.data == "expr_term":
        inner = _trees(node.children)
        return _ref(inner[0]) if len(inner) == 1 else None
    if node.data == "identifier":
        token = node.children[0]
        return Ref(str(token), getattr(token, "line", None))
    if node.data not in ACCESSORS:
        return None
    target, step = _trees(node.children)[:2]
    ref = _ref(target)
    if ref is None:
        return None
    if node.data == "get_attr_expr_term" and ref.complete:
        ref.names.append(_name(_trees(step.children)[0]))
    else:
        ref.complete = False
        if node.data == "index_expr_term":
            ref.inner.append(step)
    return ref


def references(tree, line_offset=0):
    """(root, names, line) of every reference in a parse tree."""
    found = []

    def visit(node):
        if isinstance(node, Token):
            if node.type == "HEREDOC_TEMPLATE_TRIM" or node.type.startswith("HEREDOC"):
                found.extend(_heredoc_references(str(node), node.line - 1 + line_offset))
            return
        if node.data in ACCESSORS:
            ref = _ref(node)
            if ref is not None:
                found.append((ref.root, ref.names, (ref.line or 0) + line_offset))
                for inner in ref.inner:
                    visit(inner)
                return
        if node.data in ("heredoc_template", "heredoc_template_trim"):
            token = node.children[0]
            found.extend(_heredoc_references(str(token), getattr(token, "line", 1) - 1 + line_offset))
            return
        for child in node.children:
            visit(child)

    visit(tree)
    return found


def _heredoc_references(text, line_offset):
    """The references in a heredoc's ${...} interpolations ($${ is literal)."""
    out = []
    for m in re.finditer(r"(\$?)\$\{([^}]*)\}", text):
        if m[1]:
            continue
        line = line_offset + text.count("\n", 0, m.start())
        tree = hcl2.parses_to_tree(f"x = {m[2].strip().lstrip('~').rstrip('~')}\n")
        out.extend(references(tree, line))
    return out


class Directory:
    def __init__(self, path):
        self.path = path
        self.files = {}
        self.variables, self.locals, self.outputs = {}, {}, {}
        self.modules, self.resources, self.data = {}, {}, {}
        self.duplicates = []
        for name in sorted(os.listdir(path)):
            if not name.endswith(".tf"):
                continue
            file = os.path.join(path, name)
            with open(file, encoding="utf-8") as f:
                tree = hcl2.parses_to_tree(f.read())
            self.files[file] = tree
            (body,) = _trees(tree.children)
            for block in _trees(body.children):
                if block.data != "block":
                    continue
                parts = _trees(block.children)
                kind, labels, inner = _label(parts[0]), [_label(p) for p in parts[1:-1]], parts[-1]
                line = parts[0].children[0].line
                if kind == "locals":
                    for attr in _trees(inner.children):
                        if attr.data == "attribute":
                            self._declare(self.locals, _name(_trees(attr.children)[0]), (file, line), "local")
                    continue
                table = {"variable": self.variables, "output": self.outputs, "module": self.modules,
                         "resource": self.resources, "data": self.data}.get(kind)
                if table is not None:
                    key = tuple(labels) if kind in ("resource", "data") else labels[0]
                    self._declare(table, key, (file, line, inner), kind)

    def _declare(self, table, key, where, kind):
        if key in table:
            name = ".".join(key) if isinstance(key, tuple) else key
            self.duplicates.append(f"{_rel(where[0])}:{where[1]}: {kind} {name} is declared twice")
        table[key] = where

    def module_source(self, name):
        """The directory of a module call's source, when it is a local path."""
        file, line, body = self.modules[name]
        for attr in _trees(body.children):
            if attr.data == "attribute" and _name(_trees(attr.children)[0]) == "source":
                value = _trees(attr.children)[1]
                strings = [n for n in value.iter_subtrees() if n.data == "string"]
                if strings:
                    source = _label(strings[0])
                    if source.startswith(("./", "../")):
                        return os.path.normpath(os.path.join(self.path, source))
        return None


def check_directory(path, loaded=None):
    """The problems of one directory, as lines naming file, line and reference."""
    loaded = loaded if loaded is not None else {}
    d = loaded.setdefault(path, Directory(path))
    problems = list(d.duplicates)
    resource_types = {t for t, _ in d.resources}

    for file, tree in d.files.items():
        where = _rel(file)
        for root, names, line in references(tree):
            text = ".".join([root] + names)
            at = f"{where}:{line}: {text}"
            if root in BUILTIN_ROOTS:
                continue
            if root == "var":
                if not names:
                    problems.append(f"{at}: var needs a name")
                elif names[0] not in d.variables:
                    problems.append(f"{at}: no variable \"{names[0]}\" is declared in {_rel(path)}")
            elif root == "local":
                if not names:
                    problems.append(f"{at}: local needs a name")
                elif names[0] not in d.locals:
                    problems.append(f"{at}: no local \"{names[0]}\" is declared in {_rel(path)}")
            elif root == "module":
                if not names:
                    problems.append(f"{at}: module needs a name")
                elif names[0] not in d.modules:
                    problems.append(f"{at}: no module \"{names[0]}\" is called in {_rel(path)}")
                elif len(names) > 1:
                    source = d.module_source(names[0])
                    if source and os.path.isdir(source):
                        child = loaded.setdefault(source, Directory(source))
                        if names[1] not in child.outputs:
                            problems.append(f"{at}: module {names[0]} ({_rel(source)}) has no output \"{names[1]}\"")
            elif root == "data":
                if len(names) < 2:
                    problems.append(f"{at}: data needs a type and a name")
                elif tuple(names[:2]) not in d.data:
                    problems.append(f"{at}: no data \"{names[0]}\" \"{names[1]}\" is declared in {_rel(path)}")
            elif root.startswith("aws_") or root in resource_types:
                if not names:
                    continue  # a bare name, e.g. in ignore_changes
                if (root, names[0]) not in d.resources:
                    problems.append(f"{at}: no resource \"{root}\" \"{names[0]}\" is declared in {_rel(path)}")

    for name, (file, line, body) in d.modules.items():
        source = d.module_source(name)
        if not source:
            continue
        if not os.path.isdir(source):
            problems.append(f"{_rel(file)}:{line}: module {name}: source {_rel(source)} is not a directory")
            continue
        child = loaded.setdefault(source, Directory(source))
        given = {_name(_trees(a.children)[0]): a for a in _trees(body.children) if a.data == "attribute"}
        for arg, attr in given.items():
            if arg not in META_ARGUMENTS and arg not in child.variables:
                arg_line = _trees(attr.children)[0].children[0].line
                problems.append(f"{_rel(file)}:{arg_line}: module {name}: {_rel(source)} has no variable \"{arg}\"")
        for var, (_, _, var_body) in child.variables.items():
            has_default = any(a.data == "attribute" and _name(_trees(a.children)[0]) == "default"
                              for a in _trees(var_body.children))
            if not has_default and var not in given:
                problems.append(f"{_rel(file)}:{line}: module {name}: variable \"{var}\" of {_rel(source)} has no default and is not given")
    return problems


def _rel(path):
    return os.path.relpath(path)


def directories(root):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        if any(n.endswith(".tf") for n in filenames):
            yield dirpath


def main(argv):
    root = argv[1] if len(argv) > 1 else "terraform"
    loaded, problems, count = {}, [], 0
    for path in directories(root):
        count += 1
        problems.extend(check_directory(path, loaded))
    for p in problems:
        print(f"not ok - {p}")
    if count == 0:
        print(f"no directory with .tf files under {root}")
        return 1
    print(f"{count} directories: {len(problems)} undeclared or misused references")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
